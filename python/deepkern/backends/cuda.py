"""``deepkern._cuda``, the compiled CUDA module, when this build has one.

It is absent when the package was built without nvcc; importing it can also fail on an unusual
system. Either way deepkern keeps working on the CPU and ``import_error`` says why.
"""

from __future__ import annotations

try:
    from .. import _cuda  # type: ignore[attr-defined]

    import_error = None
except ImportError as exc:  # not built, or its shared-library dependencies are missing
    _cuda = None
    import_error = str(exc)
