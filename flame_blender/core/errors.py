"""Exceptions raised for bad FLAME files and bad parameters."""

from __future__ import annotations

from pathlib import Path


class FlameFileError(ValueError):
    """A FLAME file (or folder) is missing, unreadable or not what was expected.

    The message always starts with the path, then says what was wrong and what was expected.
    """

    def __init__(self, path: str | Path | None, problem: str) -> None:
        self.path = Path(path) if path is not None else None
        self.problem = problem
        super().__init__(f"{path}: {problem}" if path is not None else problem)


class UnsafePickleError(FlameFileError):
    """A pickle names a global outside the small set FLAME files use; nothing from it ran."""


class FlameParameterError(ValueError):
    """FLAME parameters of the wrong shape, count or value (NaN, inf)."""


def read_file_bytes(path, what: str) -> bytes:
    """The whole of the file ``path``, or a :class:`FlameFileError` naming it and ``what`` it is
    ("PNG", "EXR"...) when it cannot be read."""
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise FlameFileError(path, f"cannot read {what}: {error.strerror or error}") from None
