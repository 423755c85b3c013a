"""Atomic file writes: a temporary file in the same folder, then ``os.replace``.

``os.replace`` within one folder (one file system) is atomic on POSIX and Windows, so a file
under its final name is always complete: a run killed mid-write leaves at most a hidden
``.NAME.<pid>.tmp<suffix>`` file, which :func:`remove_stale_temporaries` cleans up on the next run.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

TEMPORARY_SUFFIX = ".tmp"


def temporary_path(path: str | Path) -> Path:
    """A hidden sibling of ``path`` for writing, unique to this process."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}{TEMPORARY_SUFFIX}")


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` so that ``path`` is either the old file or the whole new one."""
    return atomic_write_with(path, lambda temporary: temporary.write_bytes(data))


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_with(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(temporary_path)`` and move the result onto ``path``.

    For writers that insist on a file name of their own (Blender's image writer); the
    temporary keeps ``path``'s suffix so such writers pick the right format.
    """
    path = Path(path)
    temporary = temporary_path(path)
    temporary = temporary.with_name(temporary.name + path.suffix)
    try:
        write(temporary)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


def final_name_of_temporary(name: str) -> str | None:
    """The final file name a temporary written by :func:`atomic_write_with` stands for, else None."""
    if not name.startswith("."):
        return None
    stem, marker, _ = name[1:].rpartition(TEMPORARY_SUFFIX)
    if not marker:
        return None
    final, dot, pid = stem.rpartition(".")
    return final if dot and pid.isdigit() else None


def remove_stale_temporaries(
    folder: str | Path, owns: Callable[[str], bool] = lambda final_name: True
) -> int:
    """Delete leftovers of killed writers in ``folder`` whose final name ``owns`` accepts.

    ``owns`` lets concurrent writers to one folder (shards of a batch) each clean up only their
    own files. Returns how many were removed.
    """
    removed = 0
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    for candidate in folder.iterdir():
        final = final_name_of_temporary(candidate.name)
        if final is not None and owns(final) and candidate.is_file():
            candidate.unlink(missing_ok=True)
            removed += 1
    return removed
