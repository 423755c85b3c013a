"""numpy's BLAS on one thread while a single head updates.

numpy's OpenBLAS splits even the small products of one head (the 36 x 15069 pose correctives)
over every core. Inside Blender the other cores are busy with Blender's own work, and the split
then costs more than it saves: measured on the 2-core development machine with the other core
loaded, a pose update took 23 ms instead of 8 ms. PyTorch is kept on one thread for the same
reason (:func:`runtime._single_torch_thread`).

The OpenBLAS library is the one numpy ships (``numpy.libs`` on Linux, ``.dylibs`` on macOS,
``.libs`` on Windows); a numpy built without OpenBLAS makes :func:`single_threaded_blas` a no-op.
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_functions: tuple | None = None
_probed = False


def _library_candidates() -> list[Path]:
    import numpy

    package = Path(numpy.__file__).resolve().parent
    found: list[Path] = []
    for folder in (package.parent / "numpy.libs", package / ".libs", package / ".dylibs"):
        if folder.is_dir():
            found += sorted(p for p in folder.iterdir() if "openblas" in p.name.lower())
    return found


def openblas_functions() -> tuple | None:
    """``(get_num_threads, set_num_threads)`` of numpy's OpenBLAS, or None."""
    global _functions, _probed
    if _probed:
        return _functions
    _probed = True
    for path in _library_candidates():
        try:
            library = ctypes.CDLL(str(path))  # already loaded by numpy: the same handle
        except OSError:
            continue
        for suffix in ("64_", ""):  # numpy's 64-bit-integer build renames the symbols
            get = getattr(library, f"openblas_get_num_threads{suffix}", None)
            set_ = getattr(library, f"openblas_set_num_threads{suffix}", None)
            if get is not None and set_ is not None:
                get.restype = ctypes.c_int
                set_.argtypes = [ctypes.c_int]
                _functions = (get, set_)
                return _functions
    return None


@contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Within the block numpy's OpenBLAS uses one thread; the previous count comes back after."""
    functions = openblas_functions()
    previous = functions[0]() if functions is not None else 1
    if previous == 1:
        yield
        return
    functions[1](1)
    try:
        yield
    finally:
        functions[1](previous)
