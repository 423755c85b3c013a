"""Single-head pose updates with numpy's BLAS on every core against one thread, while another
process keeps one core busy (as Blender's own work does).

    .venv/bin/python benchmarks/blas_threads.py [--rounds 200]

Prints a markdown table: median wall time of the pose-corrective product (36 x 15069, what one
pose change multiplies) and of a full ``update_head`` pose change of a 300 + 100 head, with the
NumPy backend, each with OpenBLAS's default thread count and with one thread.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _spin(stop) -> None:
    while not stop.is_set():
        pass


def _median_ms(function, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        function()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()

    import bpy
    import numpy as np

    import flame_blender
    from flame_blender.blender import blas_threads, head, import_head, preferences
    from flame_blender.core import builtin_flame_dir

    functions = blas_threads.openblas_functions()
    if functions is None:
        print("numpy here has no OpenBLAS: nothing to compare")
        return
    flame_blender.register()
    prefs = preferences.get_preferences()
    if prefs is not None:
        prefs.backend = "NUMPY"
    obj = import_head(bpy.context, builtin_flame_dir(), n_shape=300, n_expression=100)
    rng = np.random.default_rng(0)
    corrective = rng.standard_normal((36, 15069)).astype(np.float32)
    feature = rng.standard_normal(36).astype(np.float32)

    def product() -> None:
        feature @ corrective

    angles = iter(np.tile(np.linspace(-0.3, 0.3, 50), 10_000))

    def pose_change() -> None:
        obj.flame.jaw_pose = (float(next(angles)), 0.0, 0.0)  # update_head runs in the callback

    stop = multiprocessing.Event()
    busy = multiprocessing.Process(target=_spin, args=(stop,), daemon=True)
    busy.start()
    threads = functions[0]()
    rows = []
    try:
        for name, function in (("corrective product 36 x 15069", product),
                               ("pose change, update_head (NumPy backend)", pose_change)):
            # every thread: the product as numpy runs it anywhere else
            default = _median_ms(function, args.rounds) if name.startswith("corrective") else None
            with blas_threads.single_threaded_blas():
                single = _median_ms(function, args.rounds)
            if default is None:  # update_head keeps BLAS on one thread itself: force all threads
                original = blas_threads.single_threaded_blas
                blas_threads.single_threaded_blas = _no_change
                head.single_threaded_blas = _no_change
                try:
                    default = _median_ms(function, args.rounds)
                finally:
                    blas_threads.single_threaded_blas = original
                    head.single_threaded_blas = original
            rows.append((name, default, single))
    finally:
        stop.set()
        busy.join()
        flame_blender.unregister()
    print(f"OpenBLAS threads by default: {threads}; one other process keeps a core busy\n")
    print(f"| measure (median of {args.rounds}) | {threads} BLAS threads | 1 BLAS thread |")
    print("|---|---|---|")
    for name, default, single in rows:
        print(f"| {name} | {default:.3f} ms | {single:.3f} ms |")


class _NoChange:
    def __enter__(self):
        return None

    def __exit__(self, *args):
        return False


def _no_change():
    return _NoChange()


if __name__ == "__main__":
    main()
