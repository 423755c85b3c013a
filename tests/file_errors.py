"""The check every bad-input test makes: the error names the file and says what was wrong."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import pytest

from flame_blender.core.errors import FlameFileError


def assert_file_error(action: Callable[[], object], path: Path, words: Iterable[str]) -> str:
    """``action()`` raises ``FlameFileError`` whose message holds ``path`` and every word."""
    with pytest.raises(FlameFileError) as caught:
        action()
    message = str(caught.value)
    assert str(path) in message, (path, message)
    for word in words:
        assert word in message, (word, message)
    return message
