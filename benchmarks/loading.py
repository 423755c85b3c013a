"""Loading speed of the FLAME files through the restricted readers.

    .venv/bin/python benchmarks/loading.py [--repeats N] [--flame-dir DIR]

Model: the synthetic FLAME folder (``builtin_flame_dir()``; 300 + 100 = 400 components, the
real ``generic_model.pkl`` format: a Python 2 protocol-2 pickle with a chumpy ``shapedirs`` of
5023 x 3 x 400 float64 and a scipy ``csc_matrix`` regressor). Each reader runs ``--repeats``
times (default 7) after one warm-up; the table shows the median and the fastest run, and the
peak memory the process reached (``ru_maxrss``, which only grows, so read the column top down).
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from flame_blender.core import landmark_io, model_io, texture_io  # noqa: E402
from flame_blender.core.synthetic import builtin_flame_dir  # noqa: E402


def _readers(folder: Path) -> dict[str, Callable[[], object]]:
    return {
        "model (generic_model.pkl, 400 comp.)": lambda: model_io.load_flame(
            folder / "generic_model.pkl"
        ),
        "masks (FLAME_masks.pkl)": lambda: model_io.load_flame_masks(folder),
        "static embedding (.pkl)": lambda: landmark_io.load_static_landmark_embedding(folder),
        "dynamic embedding (.npy)": lambda: landmark_io.load_dynamic_landmark_embedding(folder),
        "DECA embedding (.npy)": lambda: landmark_io.load_deca_landmark_embedding(folder),
        "MediaPipe embedding (.npz)": lambda: landmark_io.load_mediapipe_landmark_embedding(
            folder
        ),
        "texture (FLAME_texture.npz)": lambda: texture_io.load_texture_model(
            folder / "FLAME_texture.npz"
        ),
        "template (head_template_mesh.obj)": lambda: texture_io.load_template_mesh(folder),
    }


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--flame-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    folder = args.flame_dir or builtin_flame_dir()
    size_mb = (folder / "generic_model.pkl").stat().st_size / 1e6
    print(f"FLAME folder: {folder} (generic_model.pkl {size_mb:.0f} MB)")
    print(f"Python {platform.python_version()}, numpy {np.__version__}, {platform.machine()}\n")
    print("| file | median ms | best ms | median CPU ms | peak RSS MB |")
    print("|---|---:|---:|---:|---:|")
    for name, read in _readers(folder).items():
        read()  # warm-up: page cache, imports
        times, cpu = [], []
        for _ in range(args.repeats):
            start, start_cpu = time.perf_counter(), time.process_time()
            read()
            times.append((time.perf_counter() - start) * 1e3)
            cpu.append((time.process_time() - start_cpu) * 1e3)
        print(f"| {name} | {statistics.median(times):.1f} | {min(times):.1f} | "
              f"{statistics.median(cpu):.1f} | {_peak_mb():.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
