"""Fitting accuracy and speed on heads with known parameters: the table of the README.

    .venv/bin/python benchmarks/fitting.py [--heads 4] [--backends numpy,torch] [--threads N] [--quick]
        [--cases registered,landmarks,scan,scan_free,dense]

Targets (tests/fitting_targets.py, the same the tests use): random synthetic heads (the built-in
300 + 100 component model) with shape and expression within 2 sigma and up to 0.5 rad of jaw and
neck, rotated at random, translated, and in millimetres for even heads, metres for odd ones.
Scans are points spread by area over the head's skin with the back of the head cut away and
1 mm Gaussian noise per axis. Errors are against the known vertices (landmark residual: against
the target points), in mm. Times are seconds of the fit call (model loading excluded: a
``FitModel`` is built once per backend and used once before timing), median over heads: wall time and CPU time of the
process (all threads: on a machine shared with other jobs CPU time is the steadier number;
``--threads`` sets torch's and BLAS's threads, and idle BLAS threads that spin count as CPU).
``--quick`` uses 20 k / 100 k points instead of 100 k / 1 M; ``--cases`` runs some cases only
(``scan_free``: the scan without landmarks, ``dense``: the 1 M scan).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--backends", default="numpy,torch")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--cases", default="registered,landmarks,scan,scan_free,dense")
    args = parser.parse_args()
    cases_run = set(args.cases.split(","))
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(args.threads)  # numpy's BLAS too: it is imported below

    import numpy as np

    from flame_blender.core import FlameNumpy
    from flame_blender.core.fitting import FitModel, fit_landmarks, fit_registered, fit_scan
    from tests.fitting_targets import random_head, scan_of

    try:
        import torch

        torch.set_num_threads(args.threads)
    except ImportError:
        pass
    forward = FlameNumpy(None)
    scan_points, dense_points = (20_000, 100_000) if args.quick else (100_000, 1_000_000)

    def case_targets(head: int):
        rng = np.random.default_rng(1000 + head)
        target = random_head(rng, scale=1000.0 if head % 2 == 0 else 1.0)
        landmarks = forward.run(**target.parameters.forward_kwargs()).landmarks
        return rng, target, landmarks

    def mm(target, distance):
        return distance * 1000.0 / target.scale

    rows = []
    for backend in args.backends.split(","):
        model = FitModel(None, backend=backend)
        fit_registered(model, model.v_template)  # first-call set-up (cached arrays) is not timed
        face = model.masks["face"]
        cases = {}

        def record(name, goal, error, seconds, cases=cases, backend=backend):
            cases.setdefault((name, goal), []).append((error, *seconds))
            print(f"  {backend}: {name}: {error:.3f} mm, {seconds[0]:.2f} s wall, {seconds[1]:.2f} s CPU",
                  file=sys.stderr, flush=True)

        def timed(fit, *fit_args, model=model, **options):
            wall, cpu = time.perf_counter(), time.process_time()
            result = fit(model, *fit_args, **options)
            return result, (time.perf_counter() - wall, time.process_time() - cpu)

        for head in range(args.heads):
            rng, target, landmarks = case_targets(head)
            noisy = target.truth + rng.normal(0.0, target.scale / 1000.0, target.truth.shape)
            if "registered" in cases_run:
                result, seconds = timed(fit_registered, target.truth)
                record("registered, noise-free: vertex error max", "≤ 0.1 mm, ≤ 1 s",
                       mm(target, np.linalg.norm(result.vertices - target.truth, axis=1).max()), seconds)
                result, seconds = timed(fit_registered, noisy)
                record("registered, 1 mm noise: vertex error median", "≤ 0.5 mm, ≤ 1 s",
                       mm(target, np.median(np.linalg.norm(result.vertices - target.truth, axis=1))), seconds)
            for embedding in ("static_68", "mediapipe") if "landmarks" in cases_run else ():
                points = target.place(landmarks[embedding])
                result, seconds = timed(fit_landmarks, points, embedding)
                fitted = result.scale * forward.run(**result.parameters.forward_kwargs()).landmarks[embedding]
                record(f"landmarks only, {len(points)} points: landmark residual max", "≤ 1 mm, ≤ 1 s",
                       mm(target, np.linalg.norm(fitted - points, axis=1).max()), seconds)
            marks = target.place(landmarks["static_68"])
            for key, name, count, with_landmarks, goal in (
                ("scan", f"scan {scan_points // 1000} k points, with landmarks", scan_points, True, "≤ 1.5 mm, ≤ 10 s"),
                ("scan_free", f"scan {scan_points // 1000} k points, no landmarks", scan_points, False, "≤ 2 mm, ≤ 20 s"),
                ("dense", f"scan {dense_points // 1000} k points, with landmarks", dense_points, True, "≤ 1.5 mm, ≤ 30 s"),
            ):
                if key not in cases_run:
                    continue
                points = scan_of(target, count, 1.0, np.random.default_rng((head, count)), model.faces)
                result, seconds = timed(fit_scan, points, landmarks=marks if with_landmarks else None)
                error = mm(target, np.linalg.norm(result.vertices - target.truth, axis=1))
                record(f"{name}: face error median", goal, float(np.median(error[face])), seconds)
            print(f"{backend}: head {head + 1}/{args.heads} done", file=sys.stderr)
        for (name, goal), values in cases.items():
            errors = [e for e, _, _ in values]
            wall = statistics.median(w for _, w, _ in values)
            cpu = statistics.median(c for _, _, c in values)
            rows.append((name, goal, backend, statistics.median(errors), max(errors), wall, cpu))

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\n{args.heads} heads per case, {args.threads} threads, load average {load:.2f} at the end\n")
    print("| case | goal | backend | error (median of heads) | error (worst head) | wall s (median) | CPU s (median) |")
    print("|---|---|---|---|---|---|---|")
    for name, goal, backend, median, worst, wall, cpu in sorted(rows, key=lambda r: (r[0], r[2])):
        print(f"| {name} | {goal} | {backend} | {median:.3f} mm | {worst:.3f} mm | {wall:.2f} | {cpu:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
