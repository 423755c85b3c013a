"""Child process for the hostile-file and fuzz tests: read files under hard limits, report JSON.

    python tests/hostile_runner.py READER FILE [FILE...]

The address space is limited (``resource.setrlimit(RLIMIT_AS)``) before numpy is imported, so a
reader that tries to allocate gigabytes gets ``MemoryError`` instead of taking the machine. For
each file it prints one JSON line: the exception type, whether it is a ``FlameFileError``, the
message, the seconds the read took, the peak RSS so far, and which module attributes of
flame_blender and numpy changed (a BUILD on a function would change ``__defaults__``...).
A crash shows as a non-zero exit status, a hang as the parent's timeout.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time

ADDRESS_SPACE_LIMIT = 2 << 30  # bytes; numpy and the Python runtime reserve ~0.5 GiB

os.environ["OPENBLAS_NUM_THREADS"] = "1"
resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE_LIMIT, ADDRESS_SPACE_LIMIT))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
from reader_table import READERS  # noqa: E402

from flame_blender.core.errors import FlameFileError  # noqa: E402
from flame_blender.core.io import legacy_torch, pickle_records  # noqa: E402


def _fingerprint(value: object) -> object:
    parts = [id(value)]
    for name in ("__defaults__", "__kwdefaults__", "__qualname__", "__name__", "__code__"):
        parts.append(repr(getattr(value, name, None))[:200])
    attributes = getattr(value, "__dict__", None)
    if isinstance(attributes, dict) or type(attributes).__name__ == "mappingproxy":
        parts.append(sorted((k, id(v)) for k, v in dict(attributes).items()))
    for slot in ("args", "state", "name", "dtype", "make"):  # the records' and markers' slots
        if hasattr(type(value), "__slots__") and hasattr(value, slot):
            parts.append((slot, repr(getattr(value, slot))[:200]))
    return parts


def module_state() -> dict[str, object]:
    """Every attribute of flame_blender's modules, numpy's top level and numpy's core modules
    the pickles name, each with what a hostile BUILD could change."""
    state: dict[str, object] = {}
    modules = [m for n, m in sorted(sys.modules.items()) if n.startswith("flame_blender")]
    modules += [np, np.core.multiarray, np.core.numeric]
    for module in modules:
        for name, value in sorted(vars(module).items()):
            state[f"{module.__name__}.{name}"] = _fingerprint(value)
    for key, value in {**pickle_records.ALLOWED_GLOBALS, **pickle_records.STORAGE_GLOBALS}.items():
        state[f"allowed {key}"] = _fingerprint(value)
    return state


def peak_rss_mb() -> float:
    """This process's peak resident memory in MB: VmHWM, which starts afresh at exec (the
    ``ru_maxrss`` of a forked child keeps its parent's peak)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main(argv: list[str]) -> int:
    reader = READERS[argv[0]]
    assert legacy_torch  # imported so its state is part of the fingerprint
    for path in argv[1:]:
        before = module_state()
        start = time.perf_counter()
        try:
            reader(path)
            kind, is_file_error, message = None, False, ""
        except BaseException as error:  # noqa: BLE001 - reported to the parent, which judges
            kind = type(error).__name__
            is_file_error = isinstance(error, FlameFileError)
            message = str(error)[:500]
        seconds = time.perf_counter() - start
        after = module_state()
        changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
        peak = peak_rss_mb()
        print(json.dumps({
            "file": path, "error": kind, "file_error": is_file_error, "message": message,
            "seconds": seconds, "peak_mb": peak, "changed": changed[:20],
        }), flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
