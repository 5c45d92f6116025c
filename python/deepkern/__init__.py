"""deepkern: hand-written C++/CUDA deep-learning kernels with a PyTorch-shaped Python API."""

from __future__ import annotations

import builtins
import os
import sys
import warnings

import numpy as np

from . import (  # noqa: E402  (data batches are Tensors)
    _C,
    amp,
    autograd,
    autograd_functional,
    backends,
    cuda,
    data,
    distributed,
    distributions,
    io,
    linalg,
    nn,
    ops,
    optim,
    special,
    testing,
    utils,
)
from .amp import autocast
from .autograd import Function, enable_grad, inference_mode, is_grad_enabled, no_grad, set_grad_enabled
from .backends.cpu import isa_label as _isa_label
from .io import load, save
from .ops._validate import is_floating_dtype
from .random import Generator, get_rng_state, initial_seed, manual_seed, seed, set_rng_state
from .tensor import (
    Device,
    Tensor,
    arange,
    as_tensor,
    bool_,
    cat,
    device,
    empty,
    empty_like,
    eye,
    float32,
    float64,
    from_dlpack,
    from_numpy,
    full,
    full_like,
    get_default_dtype,
    int32,
    int64,
    linspace,
    ones,
    ones_like,
    rand,
    rand_like,
    randint,
    randn,
    randn_like,
    randperm,
    set_default_dtype,
    stack,
    tensor,
    where,
    zeros,
    zeros_like,
)
from .tensor_functions import *  # noqa: F403  (the function forms: deepkern.exp, deepkern.max, ...)
from .tensor_functions import __all__ as _FUNCTIONS
from .tensor_linalg import *  # noqa: F403  (the function forms: deepkern.det, deepkern.svd, ...)
from .tensor_linalg import __all__ as _LINALG_FUNCTIONS

# torch.autograd.functional's place: deepkern.autograd is a module, so its submodule is registered by hand.
autograd.functional = autograd_functional
sys.modules[__name__ + ".autograd.functional"] = autograd_functional

# PyTorch's dtype names (they shadow the builtins in this module's namespace, as in torch).
float, double, half = float32, float64, np.dtype(np.float16)
long, int, bool = int64, int32, bool_
float16 = half
int8, int16, uint8 = np.dtype(np.int8), np.dtype(np.int16), np.dtype(np.uint8)
short = int16

__version__ = _C.__version__
__all__ = [
    "__version__",
    "backends",
    "cuda",
    "data",
    "distributed",
    "utils",
    "io",
    "nn",
    "ops",
    "get_num_threads",
    "set_num_threads",
    "usable_cpus",
    "show_config",
    "config",
    "save",
    "load",
    "Function",
    "no_grad",
    "enable_grad",
    "is_grad_enabled",
    "set_grad_enabled",
    "manual_seed",
    "seed",
    "initial_seed",
    "get_rng_state",
    "set_rng_state",
    "Generator",
    "compile",
    "is_tensor",
    "is_floating_point",
    "finfo",
    "iinfo",
    "use_deterministic_algorithms",
    "are_deterministic_algorithms_enabled",
    "logspace",
    "set_default_dtype",
    "get_default_dtype",
    "int8",
    "int16",
    "uint8",
    "short",
    "Tensor",
    "Device",
    "device",
    "tensor",
    "as_tensor",
    "from_numpy",
    "from_dlpack",
    "zeros",
    "ones",
    "empty",
    "full",
    "zeros_like",
    "ones_like",
    "arange",
    "randn",
    "rand",
    "randint",
    "cat",
    "stack",
    "where",
    "float32",
    "float64",
    "bfloat16",  # noqa: F405  (the module's __getattr__)
    "int32",
    "int64",
    "bool_",
    "float",
    "double",
    "half",
    "float16",
    "long",
    "int",
    "bool",
    "autograd",
    "amp",
    "autocast",
    "inference_mode",
    "empty_like",
    "full_like",
    "randn_like",
    "rand_like",
    "linspace",
    "eye",
    "randperm",
    "optim",
    "linalg",
    "distributions",
    "special",
    "testing",
    *_FUNCTIONS,
    *_LINALG_FUNCTIONS,
]


def __getattr__(name: str):
    """``deepkern.bfloat16`` (ml_dtypes' NumPy dtype), resolved on first use: importing ml_dtypes
    costs a noticeable part of ``import deepkern`` and most programs never use bfloat16."""
    if name == "bfloat16":
        from .ops._validate import bfloat16_dtype

        return bfloat16_dtype()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def compile(model=None, **options):  # noqa: A001 (PyTorch's name)
    """PyTorch's ``torch.compile``: deepkern runs its kernels eagerly, so ``model`` (a module or a
    function) comes back as it is; the options are accepted. Without ``model``, a decorator."""
    return (lambda fn: fn) if model is None else model


def is_tensor(obj) -> builtins.bool:
    return isinstance(obj, Tensor)


def is_floating_point(input) -> builtins.bool:
    return isinstance(input, Tensor) and is_floating_dtype(input.dtype)


def finfo(dtype=None):
    """The limits of a floating-point dtype (default float32): ``eps``, ``max``, ``min``, ``tiny``, ...
    (NumPy's finfo; ml_dtypes' for bfloat16)."""
    from .ops._validate import is_bfloat16

    dtype = np.dtype(float32 if dtype is None else dtype)
    if is_bfloat16(dtype):
        import ml_dtypes

        return ml_dtypes.finfo(dtype)
    return np.finfo(dtype)


def iinfo(dtype):
    """The limits of an integer dtype (NumPy's iinfo)."""
    return np.iinfo(np.dtype(dtype))


_DETERMINISTIC = [False]


def use_deterministic_algorithms(mode: builtins.bool, *, warn_only: builtins.bool = False) -> None:
    """Recorded for ``are_deterministic_algorithms_enabled``: deepkern's kernels give the same result for
    the same inputs and thread count in any case (their reductions have a fixed order)."""
    _DETERMINISTIC[0] = builtins.bool(mode)


def are_deterministic_algorithms_enabled() -> builtins.bool:
    return _DETERMINISTIC[0]


def logspace(start, end, steps, base=10.0, *, dtype=None, device=None, requires_grad=False):
    """``base ** linspace(start, end, steps)``, as PyTorch's."""
    exponents = linspace(start, end, steps, dtype=float64)
    values = np.power(builtins.float(base), exponents.numpy())
    return tensor(
        values, dtype=get_default_dtype() if dtype is None else dtype, device=device, requires_grad=requires_grad
    )


def get_num_threads() -> int:
    """Threads deepkern's CPU kernels use."""
    return _C.get_num_threads()


def set_num_threads(n: int) -> None:
    """Set the threads deepkern's CPU kernels use (default: OMP_NUM_THREADS or usable cores). More
    threads than the CPUs this process may run on are allowed, as in PyTorch, with a RuntimeWarning:
    they take turns on the CPUs and slow the kernels down."""
    if isinstance(n, builtins.bool) or not isinstance(n, builtins.int) or n < 1:
        raise ValueError(f"set_num_threads: n must be an int >= 1, got {n!r}")
    cpus = usable_cpus()
    if n > cpus:
        warnings.warn(
            f"set_num_threads({n}): this process may run on {cpus} CPU(s); more threads than CPUs take "
            "turns on them and slow the kernels down",
            RuntimeWarning,
            stacklevel=2,
        )
    _C.set_num_threads(n)


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # no affinity mask on this OS
        return os.cpu_count() or 1


def config() -> dict:
    """The build and run-time configuration as a dict (what :func:`show_config` prints)."""
    gpus = []
    for i in range(cuda.device_count()):
        props = cuda.get_device_properties(i)
        gpus.append(f"{props['name']} (sm_{props['capability'][0]}{props['capability'][1]})")
    return {
        "version": __version__,
        "compiler": _C.compiler,
        "cpu": _C.cpu_brand(),
        "cpu_isa_detected": _C.detected_isa(),
        "cpu_isa_active": _C.active_isa(),
        "cpu_isas_compiled": list(_C.compiled_isas),
        "build_options": dict(_C.build_options),
        "location": os.path.dirname(os.path.abspath(__file__)),
        "gemm_kernel_f32": _C.gemm_kernel_name(False),
        "gemm_kernel_f64": _C.gemm_kernel_name(True),
        "threads": get_num_threads(),
        "cuda_compiled": cuda.is_compiled(),
        "cuda_archs": cuda.compiled_archs(),
        "cuda_devices": gpus,
        "cuda_status": "available" if gpus else cuda.unavailable_reason(),
    }


def show_config() -> None:
    """Print version, compiler, CPU ISA in use, threads, and the CUDA build and GPUs."""
    cfg = config()
    archs = ", ".join(f"sm_{a}" for a in cfg["cuda_archs"]) or "-"
    lines = [
        f"deepkern {cfg['version']}",
        f"  compiler:        {cfg['compiler']}",
        "  build options:   " + ", ".join(f"{k}={'on' if v else 'off'}" for k, v in cfg["build_options"].items()),
        f"  installed at:    {cfg['location']}",
        f"  cpu:             {cfg['cpu']}",
        f"  cpu isa:         {_isa_label(cfg['cpu_isa_active'])} (detected: {_isa_label(cfg['cpu_isa_detected'])}; "
        f"compiled: {', '.join(cfg['cpu_isas_compiled'])})",
        f"  gemm kernels:    float32 {cfg['gemm_kernel_f32']}, float64 {cfg['gemm_kernel_f64']}",
        f"  threads:         {cfg['threads']}",
        f"  cuda compiled:   {'yes' if cfg['cuda_compiled'] else 'no'} (archs: {archs})",
        f"  cuda devices:    {', '.join(cfg['cuda_devices']) or 'none'}"
        + ("" if cfg["cuda_devices"] else f" ({cfg['cuda_status']})"),
    ]
    print("\n".join(lines))
