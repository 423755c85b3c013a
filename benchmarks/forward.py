"""Forward-pass speed: this project's FLAME (torch, numpy) against smplx's FLAME, same run, same model.

    .venv/bin/python benchmarks/forward.py [--threads N] [--quick]     # N: default all cores

Model: the synthetic 300 + 100 component FLAME (``synthetic_flame_model(0)``); smplx gets a
plain-numpy copy of it (``FLAME_NEUTRAL.pkl`` + ``flame_static_embedding.pkl`` in a temporary
folder). Every input is random (all 400 coefficients, all poses, translation), fixed per batch
size. Torch modules run under ``torch.inference_mode()`` with ``torch.set_num_threads(N)`` and
numpy's BLAS gets the same N threads (default: every core; ``--threads 1`` shows one core). Implementations are
measured in alternating rounds (so load changes hit all of them alike) after warm-up; the table
shows medians. The second table is the Blender slider path: one head, ``shaped()`` after one
coefficient changed, after all changed, and ``posed()``.
"""

from __future__ import annotations

import argparse
import os
import pickle
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path


def _requested_threads(argv: list[str]) -> int:
    for i, arg in enumerate(argv):
        if arg == "--threads" and i + 1 < len(argv):
            return int(argv[i + 1])
        if arg.startswith("--threads="):
            return int(arg.split("=", 1)[1])
    return os.cpu_count() or 1


# numpy's BLAS reads its thread count when it loads: give it the same budget as torch.
os.environ["OPENBLAS_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(_requested_threads(sys.argv))

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flame_blender.core.model.backend import create_backend  # noqa: E402
from flame_blender.core.model.flame_numpy import FlameNumpy  # noqa: E402
from flame_blender.core.model.flame_torch import FLAME  # noqa: E402
from flame_blender.core.synthetic import synthetic_flame_model  # noqa: E402

BATCHES = (1, 64, 1024)
CUDA_BATCHES = (1024, 16384)


def random_inputs(batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "shape_params": rng.normal(size=(batch, 300)),
        "expression_params": rng.normal(size=(batch, 100)),
        "global_pose": rng.normal(size=(batch, 3)) * 0.3,
        "neck_pose": rng.normal(size=(batch, 3)) * 0.3,
        "jaw_pose": rng.normal(size=(batch, 3)) * 0.3,
        "eye_pose": rng.normal(size=(batch, 6)) * 0.3,
        "transl": rng.normal(size=(batch, 3)) * 0.1,
    }


def write_smplx_folder(model: dict, folder: Path) -> None:
    """What ``smplx.FLAME(folder)`` reads: FLAME_NEUTRAL.pkl and flame_static_embedding.pkl."""
    plain = {key: np.asarray(value) for key, value in model.items() if key not in ("bs_style", "bs_type")}
    plain["bs_style"], plain["bs_type"] = "lbs", "lrotmin"
    with open(folder / "FLAME_NEUTRAL.pkl", "wb") as handle:
        pickle.dump(plain, handle)
    rng = np.random.default_rng(0)
    barycentric = rng.random((51, 3))
    embedding = {
        "lmk_face_idx": rng.integers(0, len(model["f"]), 51).astype(np.uint32),
        "lmk_b_coords": barycentric / barycentric.sum(axis=1, keepdims=True),
    }
    with open(folder / "flame_static_embedding.pkl", "wb") as handle:
        pickle.dump(embedding, handle)


def measure(
    functions: dict[str, Callable[[], object]], repeats: int, rounds: int = 5, warmup: int = 2
) -> dict[str, tuple[float, float]]:
    """Median (wall seconds, process CPU seconds) per call of each function, in alternating rounds.

    The CPU time counts every thread of this process and none of the other jobs on the machine:
    on a loaded machine it shows what a call costs, the wall time what it took.
    """
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in functions}
    for function in functions.values():
        for _ in range(warmup):
            function()
    per_round = max(1, repeats // rounds)
    for _ in range(rounds):
        for name, function in functions.items():
            for _ in range(per_round):
                wall, cpu = time.perf_counter(), time.process_time()
                function()
                samples[name].append((time.perf_counter() - wall, time.process_time() - cpu))
    return {
        name: (statistics.median(w for w, _ in values), statistics.median(c for _, c in values))
        for name, values in samples.items()
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--threads", type=int, default=os.cpu_count() or 1, help="threads for torch and numpy's BLAS (default: all cores)"
    )
    parser.add_argument("--quick", action="store_true", help="fewer repeats (a smoke run)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import smplx

    model = synthetic_flame_model(0)
    ours = FLAME(model, n_shape=300, n_expression=100, dtype=torch.float32, landmarks=False)
    numpy_flame = FlameNumpy(model, n_shape=300, n_expression=100, landmarks=False)
    scale = 0.2 if args.quick else 1.0
    with tempfile.TemporaryDirectory() as folder:
        write_smplx_folder(model, Path(folder))
        peers = {batch: smplx.FLAME(folder, num_betas=300, num_expression_coeffs=100, batch_size=batch) for batch in BATCHES}

    print(f"# FLAME forward pass, synthetic 300+100 model, {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} thread(s) for torch and numpy's BLAS, torch {torch.__version__}, smplx {smplx.__version__ if hasattr(smplx, '__version__') else '0.1.28'}")
    results: dict[str, dict[int, tuple[float, float]]] = {"torch float32 CPU (ours)": {}, "numpy float64 (ours)": {}, "smplx.FLAME float32 CPU": {}}
    for batch in BATCHES:
        inputs = random_inputs(batch)
        ours_inputs = {k: torch.tensor(v, dtype=torch.float32) for k, v in inputs.items()}
        peer = peers[batch]
        peer_inputs = {
            "betas": ours_inputs["shape_params"],
            "expression": ours_inputs["expression_params"],
            "global_orient": ours_inputs["global_pose"],
            "neck_pose": ours_inputs["neck_pose"],
            "jaw_pose": ours_inputs["jaw_pose"],
            "leye_pose": ours_inputs["eye_pose"][:, :3].contiguous(),
            "reye_pose": ours_inputs["eye_pose"][:, 3:].contiguous(),
            "transl": ours_inputs["transl"],
        }
        with torch.inference_mode():
            difference = (ours(**ours_inputs) - peer(**peer_inputs).vertices).abs().max().item()
            if difference > 1e-4:
                raise SystemExit(f"smplx and this project disagree by {difference} m at B={batch}")
            repeats = {1: 400, 64: 40, 1024: 6}[batch]
            timed = measure(
                {
                    "torch float32 CPU (ours)": lambda a=ours_inputs: ours(**a),
                    "numpy float64 (ours)": lambda a=inputs: numpy_flame(**a),
                    "smplx.FLAME float32 CPU": lambda m=peer, a=peer_inputs: m(**a),
                },
                repeats=max(3, int(repeats * scale)),
                rounds=5 if batch < 1024 else 3,
                warmup=3 if batch < 1024 else 1,
            )
        for name, seconds in timed.items():
            results[name][batch] = seconds
        print(f"#   B={batch}: max |ours - smplx| = {difference:.2e} m", file=sys.stderr)

    print()
    print("| implementation | B=1 latency (median) | B=1 CPU time | B=1 heads/s | B=64 heads/s | B=1024 heads/s |")
    print("|---|---|---|---|---|---|")
    for name, row in results.items():
        print(
            f"| {name} | {row[1][0] * 1e3:.3f} ms | {row[1][1] * 1e3:.3f} ms | {1 / row[1][0]:,.0f} | "
            f"{64 / row[64][0]:,.0f} | {1024 / row[1024][0]:,.0f} |"
        )
    peer_row, ours_row = results["smplx.FLAME float32 CPU"], results["torch float32 CPU (ours)"]
    print(
        "| speed-up, torch (ours) / smplx | "
        + f"{peer_row[1][0] / ours_row[1][0]:.1f}x | {peer_row[1][1] / ours_row[1][1]:.1f}x | "
        + " | ".join(f"{peer_row[b][0] / ours_row[b][0]:.1f}x" for b in BATCHES)
        + " |"
    )

    if torch.cuda.is_available():
        cuda = FLAME(model, dtype=torch.float32, device="cuda", landmarks=False)
        print()
        print("| torch float32 CUDA (ours) | " + " | ".join(f"B={b} heads/s" for b in CUDA_BATCHES) + " |")
        print("|---|" + "---|" * len(CUDA_BATCHES))
        cells = []
        for batch in CUDA_BATCHES:
            inputs = {k: torch.tensor(v, dtype=torch.float32, device="cuda") for k, v in random_inputs(batch).items()}

            def run(inputs: dict = inputs) -> None:
                cuda(**inputs)
                torch.cuda.synchronize()

            with torch.inference_mode():
                seconds = measure({"cuda": run}, repeats=20, rounds=2)["cuda"][0]
            cells.append(f"{batch / seconds:,.0f}")
        print(f"| {torch.cuda.get_device_name()} | " + " | ".join(cells) + " |")

    print()
    print("| single head, Blender slider path (median wall time) | PyTorch CPU | NumPy |")
    print("|---|---|---|")
    backends = {kind: create_backend(model, kind) for kind in ("torch_cpu", "numpy")}
    rng = np.random.default_rng(1)
    shape, expression, pose = rng.normal(size=300), rng.normal(size=100), rng.normal(size=18) * 0.3
    rows: dict[str, dict[str, float]] = {"posed() (pose slider)": {}, "shaped() after one coefficient changed": {}, "shaped() after all changed": {}}
    for kind, backend in backends.items():
        v_shaped = backend.shaped(shape, expression)
        drag = shape.copy()

        def slider(backend=backend, drag=drag) -> None:
            drag[7] += 1e-3
            backend.shaped(drag, expression)

        def all_changed(backend=backend, drag=drag) -> None:
            drag += 1e-3
            backend.shaped(drag, expression)

        timed = measure(
            {
                "posed() (pose slider)": lambda backend=backend, v=v_shaped: backend.posed(v, pose[:3], pose[3:6], pose[6:9], pose[9:15], pose[15:]),
                "shaped() after one coefficient changed": slider,
                "shaped() after all changed": all_changed,
            },
            repeats=max(10, int(600 * scale)),
        )
        for name, (seconds, _) in timed.items():
            rows[name][kind] = seconds
    for name, row in rows.items():
        print(f"| {name} | {row['torch_cpu'] * 1e3:.3f} ms | {row['numpy'] * 1e3:.3f} ms |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
