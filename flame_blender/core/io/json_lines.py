"""JSON Lines files (one JSON value a line): parameter sequences and render manifests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import FlameFileError


def read_json_lines(path: str | Path, what: str) -> list[tuple[int, Any]]:
    """``(line number, value)`` for every non-blank line of ``path``.

    ``what`` names the file's role in error messages ("parameters", "manifest").
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise FlameFileError(path, f"cannot read {what}: {error.strerror or error}") from None
    except UnicodeDecodeError as error:
        raise FlameFileError(
            path, f"not UTF-8 text ({error.reason} at byte {error.start}); expected JSON Lines {what}"
        ) from None
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append((number, json.loads(line)))
        except (ValueError, RecursionError) as error:  # also huge integers, deep nesting
            raise FlameFileError(
                path, f"line {number} is not valid JSON ({type(error).__name__}: {error!s:.200})"
            ) from None
    return records
