"""One rule for every public reader: the only exception that leaves it is ``FlameFileError``.

The readers check what they expect and raise ``FlameFileError`` themselves; this decorator is
the net under them, for what a hostile file can still provoke deeper down (numpy refusing a
value, ``MemoryError``, ``RecursionError``...). The message names the file the reader was given.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from ..errors import FlameFileError

Reader = TypeVar("Reader", bound=Callable[..., Any])


def file_reader(function: Reader) -> Reader:
    """Wrap a reader whose first argument is the file (or folder) it reads."""

    @functools.wraps(function)
    def guarded(path: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return function(path, *args, **kwargs)
        except FlameFileError:
            raise
        except Exception as error:  # noqa: BLE001 - the contract: nothing else escapes
            name = path if isinstance(path, (str, Path)) else None
            text = str(error)[:300] or type(error).__name__
            raise FlameFileError(
                name, f"could not be read ({type(error).__name__}: {text})"
            ) from None

    return guarded  # type: ignore[return-value]
