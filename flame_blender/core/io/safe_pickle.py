"""A restricted reader for FLAME pickles whose output is data, never objects the file chose.

Unpickling calls whatever global a pickle names (``os.system``, ``builtins.eval``, ...), and even
the globals FLAME files need (numpy's dtype and array reconstruction) can be driven by a hostile
file into reading raw bytes as pointers. So reading happens in three steps:

1. :func:`~.pickle_scan.scan_pickle` checks the opcodes: sizes, memo indices, nesting depth;
2. ``pickle.Unpickler`` runs with :data:`~.pickle_records.ALLOWED_GLOBALS` only: every name maps
   to an inert record of its arguments (no numpy, chumpy, scipy or torch code runs), anything
   else is refused the moment it is looked up;
3. :mod:`.pickle_resolve` turns records into plain data: arrays through :mod:`.plain_arrays` (plain
   numeric dtypes, sizes equal to the bytes held), chumpy ``Ch`` into :class:`ChumpyArray`,
   ``csc_matrix`` into :class:`SparseCscMatrix`, legacy torch tensors into arrays.

Every failure is a :class:`~.errors.FlameFileError` naming the file (``UnsafePickleError`` for a
refused global). Public: :func:`load_pickle`, :func:`load_pickle_bytes`, :class:`ChumpyArray`,
:class:`SparseCscMatrix`, :func:`to_array`.
"""

from __future__ import annotations

import io
import pickle
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import FlameFileError, UnsafePickleError
from .pickle_records import ALLOWED_GLOBALS
from .pickle_resolve import Python2Text, resolve_records
from .pickle_scan import PickleScanError, scan_pickle
from .stand_ins import ChumpyArray, SparseCscMatrix, to_array

__all__ = [
    "ALLOWED_GLOBALS", "ChumpyArray", "Python2Text", "RestrictedUnpickler", "SparseCscMatrix",
    "describe_error", "load_pickle", "load_pickle_bytes", "read_file_bytes", "resolve_records",
    "to_array", "unpickle_records",
]  # fmt: skip


# --- unpickling -------------------------------------------------------------------------------


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` (Python 2 strings as bytes) that resolves only
    :data:`ALLOWED_GLOBALS` (plus ``extra_globals``) to inert records, and has no persistent
    ids unless given. Its output still holds records: see :func:`load_pickle_bytes`."""

    def __init__(
        self,
        file: Any,
        path: str | Path | None,
        extra_globals: dict[tuple[str, str], Any] | None = None,
        persistent_load: Callable[[Any], Any] | None = None,
    ) -> None:
        super().__init__(file, encoding="bytes")
        self._path = path
        self._globals = dict(ALLOWED_GLOBALS)
        if extra_globals:
            self._globals.update(extra_globals)
        self._persistent_load = persistent_load

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._globals[(module, name)]
        except (KeyError, TypeError):
            raise UnsafePickleError(
                self._path,
                f"refuses global '{str(module)[:100]}.{str(name)[:100]}': FLAME files only use "
                "numpy arrays, chumpy.ch.Ch, scipy csc_matrix and legacy torch tensors; "
                "loading it would run code from the file, so nothing was loaded",
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        if self._persistent_load is None:
            raise pickle.UnpicklingError("unexpected persistent id")
        return self._persistent_load(pid)


def unpickle_records(
    data: bytes,
    path: str | Path | None,
    start: int = 0,
    extra_globals: dict[tuple[str, str], Any] | None = None,
    persistent_load: Callable[[Any], Any] | None = None,
) -> tuple[Any, int]:
    """Scan then unpickle the pickle at ``start`` of ``data``: (value with records, end offset).
    Errors propagate as they are; the public loaders turn them into ``FlameFileError``.

    Python 2 ``str`` values arrive as bytes (so array data is never decoded and re-encoded);
    the value is wrapped in :class:`Python2Text` to tell the resolver to decode the others
    with latin1, as ``pickle.load(..., encoding='latin1')`` would."""
    blobs: list[tuple[int, int, int]] | None = [] if persistent_load is None else None
    end, python2_strings = scan_pickle(
        data, start, persistent_ids=persistent_load is not None, blobs=blobs
    )
    if blobs:
        stream, persistent_load = _without_blobs(data, start, end, blobs)
    else:
        stream = io.BytesIO(data)
        stream.seek(start)
    value = RestrictedUnpickler(stream, path, extra_globals, persistent_load).load()
    return (Python2Text(value) if python2_strings else value), end


def _without_blobs(
    data: bytes, start: int, end: int, blobs: list[tuple[int, int, int]]
) -> tuple[io.BytesIO, Callable[[Any], memoryview]]:
    """The pickle ``data[start:end]`` with each long byte string replaced by a persistent id
    (``BININT i; BINPERSID``), and the ``persistent_load`` that gives string ``i`` as a
    read-only memoryview of ``data``.

    Why: the C unpickler copies a Python 2 BINSTRING twice (into its read buffer, then into a
    new bytes object); array data then gets copied once more into the array. With views, the
    array copy is the only one. The file cannot forge these ids: the scan refused any
    persistent id of its own (this is only used when the pickle may not have them), and the
    stack effect (one value pushed) is the same as the string's."""
    view = memoryview(data).toreadonly()  # hashable and immutable, even over a bytearray
    pieces: list[Any] = []
    last = start
    for number, (opcode_at, data_at, length) in enumerate(blobs):
        pieces.append(view[last:opcode_at])
        pieces.append(b"J" + struct.pack("<i", number) + b"Q")
        last = data_at + length
    pieces.append(view[last:end])
    views = [view[data_at : data_at + length] for _opcode_at, data_at, length in blobs]

    def load(pid: Any) -> memoryview:
        # Only the ints written above reach here (the scan refused the file's own ids).
        return views[pid]

    return io.BytesIO(b"".join(pieces)), load


def describe_error(error: BaseException) -> str:
    """A short description of why a file could not be read."""
    if isinstance(error, EOFError):
        return "the file ends early (truncated?)"
    if isinstance(error, MemoryError):
        return "MemoryError: it asks for more memory than there is"
    if isinstance(error, RecursionError):
        return "RecursionError: it nests too deeply"
    text = str(error)[:300] or type(error).__name__
    return f"{type(error).__name__}: {text}"


def load_pickle_bytes(data: bytes, path: str | Path | None = None) -> Any:
    """Read the pickle in ``data`` as plain data; ``path`` names the source in errors.

    Raises:
        UnsafePickleError: the pickle names a global outside :data:`ALLOWED_GLOBALS`.
        FlameFileError: anything else wrong with the bytes (truncated, corrupt, over a limit,
            not a pickle, an array whose bytes do not match its shape).
    """
    try:
        value, _end = unpickle_records(data, path)
        return resolve_records(value, path)
    except FlameFileError:
        raise
    except PickleScanError as error:
        raise FlameFileError(path, f"is not a readable pickle ({error})") from None
    except Exception as error:  # noqa: BLE001 - no other exception may leave a reader
        raise FlameFileError(
            path, f"is not a readable pickle ({describe_error(error)}); expected a FLAME pickle"
        ) from None


def read_file_bytes(path: Path, what: str) -> bytes:
    """The bytes of ``path``; ``FlameFileError`` when it is missing, a folder or unreadable."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise FlameFileError(path, "no such file") from None
    except IsADirectoryError:
        raise FlameFileError(path, f"is a folder, expected {what}") from None
    except (OSError, MemoryError) as error:
        raise FlameFileError(path, f"cannot be read ({describe_error(error)})") from None


def load_pickle(path: str | Path) -> Any:
    """Read a pickle file as plain data (latin1 for Python 2 pickles).

    ``chumpy.ch.Ch`` values come back as :class:`ChumpyArray` and ``csc_matrix`` values as
    :class:`SparseCscMatrix` (see :func:`to_array`); arrays as fresh numpy arrays.

    Raises:
        FlameFileError: the file is missing, unreadable, truncated, over a limit or not a pickle.
        UnsafePickleError: the pickle names a global a FLAME file never uses; nothing ran.
    """
    path = Path(path).expanduser()
    data = read_file_bytes(path, "a pickle file")
    if not data:
        raise FlameFileError(path, "is empty; expected a pickle")
    return load_pickle_bytes(data, path)
