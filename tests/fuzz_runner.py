"""Child process of the fuzz test: damaged copies of one file, each read once, summary as JSON.

    python tests/fuzz_runner.py READER FILE SEED FLIPS TRUNCATIONS WORK_FOLDER [MEMBER]

With ``MEMBER`` (e.g. ``data.pkl``), ``FILE`` is a zip and only the content of its member whose
name ends with ``MEMBER`` is damaged; the archive is written again around it with correct CRCs,
so the damage reaches the unpickler instead of stopping at the zip's checksum.

Runs under ``hostile_runner``'s address-space limit. Half the byte flips land in the first
2 KiB (headers, opcodes, dtype descriptions), half anywhere; truncations cut at random lengths.
Any exception other than ``FlameFileError`` is listed; a crash is the exit status, a hang the
parent's timeout.
"""

from __future__ import annotations

import io
import json
import sys
import time
import zipfile
from pathlib import Path

import hostile_runner  # noqa: F401 - sets the address-space limit first
import numpy as np
from reader_table import READERS

from flame_blender.core.errors import FlameFileError


def mutants(data: bytes, rng: np.random.Generator, flips: int, cuts: int):
    for index in range(flips):
        span = min(len(data), 2048) if index % 2 else len(data)
        position = int(rng.integers(0, span))
        value = data[position] ^ int(rng.integers(1, 256))
        yield f"flip@{position}", data[:position] + bytes([value]) + data[position + 1 :]
    for _ in range(cuts):
        length = int(rng.integers(0, len(data)))
        yield f"cut@{length}", data[:length]


def rezip(archive: bytes, member: str, content: bytes) -> bytes:
    """``archive`` with the member whose name ends with ``member`` holding ``content``."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(archive)) as old, zipfile.ZipFile(out, "w") as new:
        for info in old.infolist():
            new.writestr(info.filename, content if info.filename.endswith(member) else old.read(info))
    return out.getvalue()


def main(argv: list[str]) -> int:
    reader_name, source, seed, flips, cuts, work, *member = argv
    reader = READERS[reader_name]
    source = Path(source)
    archive = data = source.read_bytes()
    if member:
        with zipfile.ZipFile(source) as opened:
            (name,) = [n for n in opened.namelist() if n.endswith(member[0])]
            data = opened.read(name)
    target = Path(work) / source.name
    rng = np.random.default_rng([int(seed), len(data)])
    summary = {"loaded": 0, "refused": 0, "other": [], "slowest": 0.0, "slowest_case": ""}
    for case, mutant in mutants(data, rng, int(flips), int(cuts)):
        target.write_bytes(rezip(archive, member[0], mutant) if member else mutant)
        start = time.perf_counter()
        try:
            reader(target)
            summary["loaded"] += 1
        except FlameFileError:
            summary["refused"] += 1
        except BaseException as error:  # noqa: BLE001 - reported, the parent fails on it
            summary["other"].append(f"{case}: {type(error).__name__}: {str(error)[:200]}")
        seconds = time.perf_counter() - start
        if seconds > summary["slowest"]:
            summary["slowest"], summary["slowest_case"] = seconds, case
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
