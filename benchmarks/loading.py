"""Loading speed of the FLAME files through the restricted readers, optionally against an older
tree of the project in the same run.

    .venv/bin/python benchmarks/loading.py [--before DIR] [--rounds R] [--repeats N]
                                           [--flame-dir DIR]

``--before DIR``: a checkout of an older flame-blender (for instance the tree before the
hardened readers: ``git worktree add /tmp/before 9c969b6``). Each tree is timed in its own
Python process ("worker") that imports ``flame_blender`` from that tree only; the two
alternate for ``--rounds`` rounds (default 3) so that load from other processes hits both
alike, and every reader runs ``--repeats`` times per round (default 7) after one warm-up.
Without ``--before`` only this tree is timed.

Both trees read the same files: the synthetic FLAME folder of this tree (``builtin_flame_dir()``;
300 + 100 = 400 components in the real ``generic_model.pkl`` format: a Python 2 protocol-2
pickle with a chumpy ``shapedirs`` of 5023 x 3 x 400 float64 and a scipy ``csc_matrix``
regressor), or ``--flame-dir``.

The table gives medians over all runs: CPU time (``time.process_time``; steadier than wall
time on a shared machine) and wall time, and the peak RSS of each worker (``ru_maxrss``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent

READERS: dict[str, tuple[str, str, str]] = {  # label: (module, function, argument)
    "model (generic_model.pkl, 400 comp.)": ("model_io", "load_flame", "generic_model.pkl"),
    "masks (FLAME_masks.pkl)": ("model_io", "load_flame_masks", ""),
    "static embedding (.pkl)": ("landmark_io", "load_static_landmark_embedding", ""),
    "dynamic embedding (.npy)": ("landmark_io", "load_dynamic_landmark_embedding", ""),
    "DECA embedding (.npy)": ("landmark_io", "load_deca_landmark_embedding", ""),
    "MediaPipe embedding (.npz)": ("landmark_io", "load_mediapipe_landmark_embedding", ""),
    "texture (FLAME_texture.npz)": ("texture_io", "load_texture_model", "FLAME_texture.npz"),
    "template (head_template_mesh.obj)": ("texture_io", "load_template_mesh", ""),
}


def _worker(tree: Path, folder: Path, repeats: int) -> dict:
    """Time every reader of ``tree`` (imported from there alone) on the files of ``folder``."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    sys.path.insert(0, str(tree))
    import importlib

    core = importlib.import_module("flame_blender.core")
    results: dict[str, dict] = {}
    for label, (module, function, argument) in READERS.items():
        namespace = None
        # this tree keeps readers in core/io (parameters in core/model); older trees in core/
        for place in (f"flame_blender.core.io.{module}", f"flame_blender.core.model.{module}",
                      f"flame_blender.core.{module}"):  # fmt: skip
            try:
                namespace = importlib.import_module(place)
                break
            except ImportError:
                continue
        if namespace is None:
            continue
        reader = getattr(namespace, function, None)
        if reader is None:
            continue
        target = folder / argument if argument else folder
        read: Callable[[], object] = lambda reader=reader, target=target: reader(target)  # noqa: E731
        read()  # warm-up: page cache, imports
        wall, cpu = [], []
        for _ in range(repeats):
            start, start_cpu = time.perf_counter(), time.process_time()
            read()
            wall.append((time.perf_counter() - start) * 1e3)
            cpu.append((time.process_time() - start_cpu) * 1e3)
        results[label] = {"wall": wall, "cpu": cpu}
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return {"file": str(core.__file__), "readers": results, "peak_mb": peak}


def _run_worker(tree: Path, folder: Path, repeats: int) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", str(tree),
               "--flame-dir", str(folder), "--repeats", str(repeats)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"worker for {tree} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.splitlines()[-1])


def _median(values: list[float]) -> str:
    return f"{statistics.median(values):.1f}" if values else "-"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, default=None, help="an older project tree")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--flame-dir", type=Path, default=None)
    parser.add_argument("--worker", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is not None:
        print(json.dumps(_worker(args.worker, args.flame_dir, args.repeats)))
        return 0

    folder = args.flame_dir
    if folder is None:
        sys.path.insert(0, str(HERE))
        from flame_blender.core.synthetic import builtin_flame_dir

        folder = builtin_flame_dir()
    trees = {"after": HERE} if args.before is None else {"before": args.before, "after": HERE}
    runs: dict[str, dict[str, dict[str, list[float]]]] = {name: {} for name in trees}
    peaks: dict[str, list[float]] = {name: [] for name in trees}
    for round_number in range(args.rounds):
        order = list(trees) if round_number % 2 == 0 else list(trees)[::-1]
        for name in order:
            result = _run_worker(trees[name], folder, args.repeats)
            peaks[name].append(result["peak_mb"])
            for label, times in result["readers"].items():
                slot = runs[name].setdefault(label, {"wall": [], "cpu": []})
                slot["wall"] += times["wall"]
                slot["cpu"] += times["cpu"]

    import numpy as np

    size_mb = (folder / "generic_model.pkl").stat().st_size / 1e6
    print(f"FLAME folder: {folder} (generic_model.pkl {size_mb:.0f} MB)")
    print(f"Python {platform.python_version()}, numpy {np.__version__}, {platform.machine()}; "
          f"{args.rounds} rounds x {args.repeats} loads per tree; times are medians")  # fmt: skip
    for name, tree in trees.items():
        print(f"- {name}: {tree} (peak RSS {max(peaks[name]):.0f} MB)")
    print()
    if args.before is None:
        print("| file | CPU ms | wall ms |")
        print("|---|---:|---:|")
        for label, times in runs["after"].items():
            print(f"| {label} | {_median(times['cpu'])} | {_median(times['wall'])} |")
        return 0
    print("| file | before CPU ms | after CPU ms | after / before | before wall ms | "
          "after wall ms |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|")
    for label in READERS:
        before, after = runs["before"].get(label), runs["after"].get(label)
        if before is None and after is None:
            continue
        ratio = "-"
        if before and after:
            ratio = f"{statistics.median(after['cpu']) / statistics.median(before['cpu']):.2f}"
        empty: dict[str, list[float]] = {"cpu": [], "wall": []}
        before, after = before or empty, after or empty
        print(f"| {label} | {_median(before['cpu'])} | {_median(after['cpu'])} | {ratio} | "
              f"{_median(before['wall'])} | {_median(after['wall'])} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
