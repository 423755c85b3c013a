"""Child process of the fuzz test: damaged copies of one file, each read once, summary as JSON.

    python tests/fuzz_runner.py READER FILE SEED FLIPS TRUNCATIONS WORK_FOLDER

Runs under ``hostile_runner``'s address-space limit. Half the byte flips land in the first
2 KiB (headers, opcodes, dtype descriptions), half anywhere; truncations cut at random lengths.
Any exception other than ``FlameFileError`` is listed; a crash is the exit status, a hang the
parent's timeout.
"""

from __future__ import annotations

import json
import sys
import time
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


def main(argv: list[str]) -> int:
    reader_name, source, seed, flips, cuts, work = argv
    reader = READERS[reader_name]
    source = Path(source)
    data = source.read_bytes()
    target = Path(work) / source.name
    rng = np.random.default_rng([int(seed), len(data)])
    summary = {"loaded": 0, "refused": 0, "other": [], "slowest": 0.0, "slowest_case": ""}
    for case, mutant in mutants(data, rng, int(flips), int(cuts)):
        target.write_bytes(mutant)
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
