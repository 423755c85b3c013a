"""What FLAME pickles' foreign classes become: small data holders, no chumpy or scipy needed.

``chumpy.ch.Ch`` becomes :class:`ChumpyArray` (its stored value ``x``), ``scipy.sparse``'s
``csc_matrix`` becomes :class:`SparseCscMatrix` (made dense on request); :func:`to_array`
unwraps either.
"""

from __future__ import annotations

from typing import Any

import numpy as np

MAX_DENSE_ELEMENTS = 1 << 26  # a csc_matrix made dense (FLAME's regressor: 5 x 5023)


class ChumpyArray:
    """Stand-in for ``chumpy.ch.Ch``: keeps only the stored value ``x`` (an ndarray).

    chumpy's bookkeeping (``_dirty_vars``, ``_itr``, ``_depends_on_deps``, ...) is dropped.
    ``np.asarray(ch)`` and ``ch.r`` give the value, as with chumpy.
    """

    def __init__(self, x: Any = None) -> None:
        self.x = x

    @property
    def r(self) -> np.ndarray:
        return to_array(self)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        value = to_array(self)
        return value if dtype is None else value.astype(dtype, copy=False)

    def __repr__(self) -> str:
        return f"ChumpyArray(shape={getattr(self.x, 'shape', None)})"


class SparseCscMatrix:
    """Stand-in for ``scipy.sparse.csc_matrix`` (old and new module paths).

    Compressed sparse columns: the rows of column ``j`` are ``indices[indptr[j]:indptr[j+1]]``
    with values ``data[indptr[j]:indptr[j+1]]``.
    """

    def __init__(self, shape: Any = None, indices: Any = None, indptr: Any = None,
                 data: Any = None) -> None:  # fmt: skip
        self.shape = shape
        self.indices = indices
        self.indptr = indptr
        self.data = data

    def toarray(self) -> np.ndarray:
        """The dense float64 matrix ``(rows, cols)``; ValueError when the parts disagree."""
        if self.shape is None or len(self.shape) != 2:
            raise ValueError(f"csc_matrix has no 2-D shape (found {self.shape!r})")
        rows, cols = self.shape
        if rows * cols > MAX_DENSE_ELEMENTS:
            raise ValueError(f"csc_matrix of shape {self.shape} is too large to make dense")
        indices = np.asarray(to_array(self.indices)).ravel()
        indptr = np.asarray(to_array(self.indptr)).ravel()
        data = np.asarray(to_array(self.data)).ravel()
        if indices.dtype.kind not in "iu" or indptr.dtype.kind not in "iu":
            raise ValueError("csc_matrix indices/indptr must be integer arrays")
        if data.dtype.kind not in "biuf":
            raise ValueError("csc_matrix data must be numbers")
        data = data.astype(np.float64)
        if indptr.shape != (cols + 1,):
            raise ValueError(f"csc_matrix indptr has {indptr.size} entries, expected {cols + 1}")
        if indptr.dtype == np.uint64 and indptr.size and indptr.max() > np.iinfo(np.int64).max:
            raise ValueError("csc_matrix indptr holds values beyond int64")
        indptr = indptr.astype(np.int64)
        nnz = int(indptr[-1])
        if indptr[0] != 0 or np.any(np.diff(indptr) < 0):
            raise ValueError("csc_matrix indptr must start at 0 and never decrease")
        if nnz > indices.size or nnz > data.size:
            raise ValueError(
                f"csc_matrix indptr promises {nnz} entries but indices has {indices.size} "
                f"and data {data.size}"
            )
        indices = indices[:nnz]
        if nnz and (indices.min() < 0 or indices.max() >= rows):
            raise ValueError(f"csc_matrix row index out of range 0..{rows - 1}")
        indices = indices.astype(np.int64)
        dense = np.zeros((rows, cols), dtype=np.float64)
        columns = np.repeat(np.arange(cols), np.diff(indptr))
        np.add.at(dense, (indices, columns), data[:nnz])  # duplicates add, as scipy does
        return dense

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        dense = self.toarray()
        return dense if dtype is None else dense.astype(dtype, copy=False)

    def __repr__(self) -> str:
        return f"SparseCscMatrix(shape={self.shape})"


def to_array(value: Any) -> Any:
    """Unwrap stand-ins: a ``Ch`` gives its ``x`` (recursively), a sparse matrix its dense array;
    anything else is returned unchanged."""
    seen = 0
    while isinstance(value, ChumpyArray):
        value = value.x
        seen += 1
        if seen > 100:
            raise ValueError("chumpy.ch.Ch nests more than 100 deep")
    if isinstance(value, SparseCscMatrix):
        return value.toarray()
    return value
