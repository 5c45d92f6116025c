"""The libraries a case is timed on (deepkern, NumPy/OpenBLAS, PyTorch) and their thread control.

deepkern, NumPy's BLAS (through threadpoolctl) and PyTorch run at the same thread count. Without
threadpoolctl NumPy's threads cannot be set, so only the default thread count is compared.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Callable, Iterable, Iterator, List, Optional

import numpy as np

#: Pause before a library's block when more than one thread was or will be busy (s): OpenBLAS's and
#: OpenMP's worker threads keep spinning for ~0.1-0.2 s after a call and steal the cores from
#: whichever library runs next.
PAUSE_S = 0.3
#: Pause between single-threaded blocks. Between deepkern's and PyTorch's blocks at one thread count
#: there is none: they share one OpenMP runtime (OpenBLAS's threads spin on their own).
PAUSE_1T_S = 0.05


def idle_pause_s(threads: int) -> float:
    """How long to wait for the worker threads of a block at ``threads`` threads to go idle."""
    return PAUSE_S if threads > 1 else PAUSE_1T_S


def threadpoolctl_available() -> bool:
    try:
        import threadpoolctl  # noqa: F401
    except ImportError:
        return False
    return True


def installed_torch():
    """PyTorch if it is installed (imported lazily; never a dependency of deepkern), else None."""
    try:
        import torch
    except ImportError:
        return None
    return torch


@dataclasses.dataclass
class Backend:
    """One library an op is timed on: how to check it is there, set its threads, convert inputs."""

    name: str
    available: Callable[[], bool]
    threads: Callable[[int], contextlib.AbstractContextManager]
    convert: Callable[[np.ndarray], object] = lambda x: x
    version: Callable[[], str] = lambda: ""
    #: False when this library's thread count cannot be set (it runs at its default).
    controls_threads: Callable[[], bool] = lambda: True
    #: A NumPy input as this library's array on the GPU, for the cases with ``device="cuda"``; None
    #: for a library that has no GPU arrays.
    to_cuda: Optional[Callable[[np.ndarray], object]] = None
    #: Why this library cannot run GPU cases here (None when it can).
    cuda_missing: Callable[[], Optional[str]] = lambda: "it has no GPU arrays"


@contextlib.contextmanager
def _deepkern_threads(n: int) -> Iterator[None]:
    from .. import get_num_threads, set_num_threads

    old = get_num_threads()
    set_num_threads(int(n))
    try:
        yield
    finally:
        set_num_threads(old)


@contextlib.contextmanager
def _numpy_threads(n: int) -> Iterator[None]:
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # runs at OpenBLAS's default; callers compare only the default count
        yield
        return
    with threadpool_limits(limits=int(n), user_api="blas"):
        yield


@contextlib.contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    torch = installed_torch()
    if torch is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(old)


def numpy_blas_version() -> str:
    version = f"numpy {np.__version__}"
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return version
    for info in threadpool_info():
        if info.get("user_api") == "blas":
            return f"{version}, {info.get('internal_api')} {info.get('version')} ({info.get('architecture')})"
    return version


def _torch_from_numpy(x: np.ndarray):
    return installed_torch().from_numpy(x)  # zero copy; transposed views keep their strides


def _deepkern_to_cuda(x: np.ndarray):
    from ..backends import to_device

    return to_device(x, "cuda")


def cuda_unavailable() -> Optional[str]:
    """Why deepkern cannot time GPU cases here (no CUDA build, no GPU, a driver too old), or None."""
    from .. import cuda

    return None if cuda.is_available() else f"deepkern has no usable GPU: {cuda.unavailable_reason()}"


def _torch_cuda_missing() -> Optional[str]:
    torch = installed_torch()
    if torch is None:
        return "PyTorch is not installed"
    if not torch.cuda.is_available():
        return f"this PyTorch ({torch.__version__}) has no usable GPU"
    return None


def backends() -> List[Backend]:
    """deepkern and the references, in the order they are timed."""
    from .. import __version__

    return [
        Backend(
            "deepkern",
            lambda: True,
            _deepkern_threads,
            version=lambda: f"deepkern {__version__}",
            to_cuda=_deepkern_to_cuda,
            cuda_missing=cuda_unavailable,
        ),
        Backend(
            "numpy", lambda: True, _numpy_threads, version=numpy_blas_version, controls_threads=threadpoolctl_available
        ),
        Backend(
            "torch",
            lambda: installed_torch() is not None,
            _torch_threads,
            convert=_torch_from_numpy,
            version=lambda: f"torch {installed_torch().__version__}",
            to_cuda=lambda x: _torch_from_numpy(x).cuda(),
            cuda_missing=_torch_cuda_missing,
        ),
    ]


def get_backend(name: str) -> Backend:
    for backend in backends():
        if backend.name == name:
            return backend
    raise ValueError(f"unknown backend {name!r}; known: {[b.name for b in backends()]}")


@contextlib.contextmanager
def limit_threads(n: int, names: Iterable[str] = ("deepkern", "numpy", "torch")) -> Iterator[None]:
    """Run deepkern and the references (those installed) at ``n`` threads inside the block."""
    with contextlib.ExitStack() as stack:
        for name in names:
            backend = get_backend(name)
            if backend.available():
                stack.enter_context(backend.threads(n))
        yield


def torch_missing(reference: str) -> Optional[str]:
    """Why a suite whose only reference is PyTorch's ``reference`` cannot run here, or None when
    PyTorch is installed (a :attr:`Suite.unavailable <deepkern.bench.registry.Suite.unavailable>`)."""
    if installed_torch() is None:
        return (
            f"its reference is PyTorch ({reference}), which is not installed "
            f'(install the bench extra: pip install ".[bench]")'
        )
    return None
