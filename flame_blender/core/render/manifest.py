"""The ``index.jsonl`` manifest of a batch render: one JSON object a line, one line a sample.

A record is ``{"index": 3, "id": "000003", "status": "ok" | "failed" | "pending", ...}``; "ok"
records list the sample's files (relative to the output folder), "failed" ones the ``error``.
An unsharded run writes ``index.jsonl``; shard K of N writes ``index.shard-K-of-N.jsonl`` so
that shards running at once never write the same file; :func:`merge_manifests` combines them
into ``index.jsonl``. Every write replaces the whole file atomically.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..errors import FlameFileError
from ..io.atomic import atomic_write_text
from ..io.json_lines import read_json_lines

MANIFEST_NAME = "index.jsonl"
_SHARD_PATTERN = re.compile(r"^index\.shard-(\d+)-of-(\d+)\.jsonl$")
# when records of one sample disagree, the better status wins
_STATUS_RANK = {"ok": 0, "failed": 1, "pending": 2}


def manifest_path(out_dir: str | Path, shard: int = 0, shards: int = 1) -> Path:
    """``index.jsonl``, or ``index.shard-K-of-N.jsonl`` for a shard of a split run."""
    name = MANIFEST_NAME if shards == 1 else f"index.shard-{shard}-of-{shards}.jsonl"
    return Path(out_dir) / name


def write_manifest(path: str | Path, records: Iterable[dict[str, Any]]) -> Path:
    """Write records sorted by index, atomically."""
    ordered = sorted(records, key=lambda record: record["index"])
    return atomic_write_text(path, "".join(json.dumps(record) + "\n" for record in ordered))


def read_manifest(path: str | Path) -> list[dict[str, Any]]:
    """The records of one manifest file."""
    path = Path(path)
    records = []
    for number, record in read_json_lines(path, "manifest"):
        if not isinstance(record, dict) or "index" not in record or "status" not in record:
            raise FlameFileError(path, f"line {number}: expected an object with index and status")
        records.append(record)
    return records


def shard_manifests(out_dir: str | Path) -> list[Path]:
    """The shard manifests in ``out_dir``, sorted by (N, K)."""
    found = []
    for candidate in Path(out_dir).glob("index.shard-*-of-*.jsonl"):
        match = _SHARD_PATTERN.match(candidate.name)
        if match:
            found.append(((int(match.group(2)), int(match.group(1))), candidate))
    return [path for _, path in sorted(found)]


def merge_manifests(out_dir: str | Path) -> tuple[Path, dict[str, int]]:
    """Combine every shard manifest (and an existing ``index.jsonl``) into ``index.jsonl``.

    Where several records describe one sample (shards of different splits, or a previous merge),
    "ok" beats "failed" beats "pending". Returns the path and the count of each status.
    """
    out_dir = Path(out_dir)
    sources = shard_manifests(out_dir)
    merged_path = out_dir / MANIFEST_NAME
    if merged_path.exists():
        sources.insert(0, merged_path)
    if not sources:
        raise FlameFileError(out_dir, "no index.jsonl or index.shard-K-of-N.jsonl manifests to merge")
    best: dict[int, dict[str, Any]] = {}
    for source in sources:
        for record in read_manifest(source):
            index = int(record["index"])
            current = best.get(index)
            if current is None or _STATUS_RANK.get(record["status"], 3) <= _STATUS_RANK.get(
                current["status"], 3
            ):
                best[index] = record
    write_manifest(merged_path, best.values())
    counts: dict[str, int] = {}
    for record in best.values():
        counts[record["status"]] = counts.get(record["status"], 0) + 1
    return merged_path, counts
