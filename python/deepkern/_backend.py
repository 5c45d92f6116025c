"""Loads the compiled modules: ``_C`` (CPU, always built) and ``_cuda`` (optional).

``_cuda`` is absent when the package was built without nvcc; importing it can also fail on an
unusual system. Either way deepkern keeps working on the CPU and ``cuda_import_error`` says why.
"""

from . import _C  # noqa: F401  (the CPU module is part of every build)

try:
    from . import _cuda  # type: ignore[attr-defined]

    cuda_import_error = None
except ImportError as exc:  # not built, or its shared-library dependencies are missing
    _cuda = None
    cuda_import_error = str(exc)
