"""The compiled modules under their former names, for ``deepkern.benchmark``: ``_C`` (CPU) and
``_cuda`` with ``cuda_import_error``. New code takes them from ``deepkern.backends``."""

from .backends.cpu import _C  # noqa: F401
from .backends.cuda import _cuda  # noqa: F401
from .backends.cuda import import_error as cuda_import_error  # noqa: F401
