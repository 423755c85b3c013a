"""Batch rendering speed per image: Cycles' sampling, scene sync, the ground truth, and
everything else (our code between Cycles calls), with images/s, on the CPU and on a GPU when
one is present.

    python benchmarks/render.py [--configs 64x1 256x16 512x64] [--images 6] [--repeats 3]
                                [--devices CPU GPU] [--compare-with REV]

Each run renders ``--images`` images with ``BatchRenderer`` (what ``scripts/render_batch.py``
runs) in a fresh process; the figures are medians over ``--repeats`` runs. Per image:

- *Cycles sampling*: the picture's render from Cycles' first "Sample" status to its end
  (sampling and denoising);
- *scene sync*: the picture's render before that status (Blender's and Cycles' scene update);
- *ground-truth pass (Cycles)*: the whole 1-sample ground-truth render, in revisions that
  render one (before the ground truth was rasterized);
- *ground truth rasterized*: ``core.render.rasterize`` and the normals and labels from it, on
  the writer thread, wall time and the thread's CPU time (it overlaps the next image's render,
  so it is not part of the wall time unless the writer falls behind; on a CPU it competes with
  Cycles for the cores, which inflates its wall time);
- *everything else*: the rest of the wall time per image: our code between Cycles calls
  (forward pass, studio, saving and reading images, JSON, manifest);
- *images/s*: one over the wall time per image.

Steady state only: the wall time per image is measured from the second image's picture render
to the last one's, so neither the first render (kernel loading, full sync) nor the writer
draining at the end is counted. ``--compare-with REV`` also measures git revision REV of this
repository (checked out into a temporary folder), same machine, same run, in alternation.
Renders run on the CPU, and additionally on the GPU (Cycles' best backend) when one is found.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
ROWS = (
    ("sampling", "Cycles sampling (+ denoising), ms"),
    ("sync", "scene sync, ms"),
    ("truth", "ground-truth pass (Cycles, main thread), ms"),
    ("raster", "ground truth rasterized (writer thread), ms"),
    ("raster_cpu", "ground truth rasterized, CPU time of the writer thread, ms"),
    ("else", "everything else (our code), ms"),
    ("wall", "wall per image, ms"),
    ("rate", "images/s"),
)

RASTER_PHASE = "ground truth (rasterized, writer thread)"  # BatchRenderer.phase_seconds key


# -- one measurement, in a child process -----------------------------------------------------


def measure(source: Path, width: int, height: int, samples: int, device: str, images: int) -> dict:
    """Render ``images`` images with the code in ``source``; per-image figures in seconds."""
    sys.path.insert(0, str(source))
    import bpy

    import flame_blender

    flame_blender.register()
    from flame_blender.blender.render import batch

    starts: list[float] = []
    durations: list[float] = []
    syncs: list[float] = []
    sampling_started: list[float | None] = [None]

    def pre(*args) -> None:
        starts.append(time.perf_counter())
        sampling_started[0] = None

    def stats(text, *args) -> None:
        if sampling_started[0] is None and starts and "| Sample " in str(text):
            sampling_started[0] = time.perf_counter()

    def post(*args) -> None:
        now = time.perf_counter()
        durations.append(now - starts[-1])
        begun = sampling_started[0]
        syncs.append((begun if begun is not None else now) - starts[-1])

    with tempfile.TemporaryDirectory(prefix="flame-render-bench-") as out:
        settings = batch.BatchSettings(
            out=Path(out), count=images, resolution=(width, height), samples=samples, device=device,
        )
        renderer = batch.BatchRenderer(settings, log=lambda text: None)
        renderer.prepare()
        for handlers, function in (
            (bpy.app.handlers.render_pre, pre),
            (bpy.app.handlers.render_stats, stats),
            (bpy.app.handlers.render_post, post),
        ):
            handlers.append(function)
        summary = renderer.run()
    # Cycles renders per image: 2 when the revision renders its ground truth, else 1
    renders = len(durations) // images if images else 0
    if summary.failed or summary.rendered != images or renders not in (1, 2) or len(durations) != renders * images:
        raise RuntimeError(f"benchmark run failed: {summary.failures}")
    steady = range(1, images - 1)  # images whose whole cycle lies between two picture starts
    wall = (starts[renders * (images - 1)] - starts[renders]) / len(steady)
    picture = statistics.fmean(durations[renders * i] for i in steady)
    sync = statistics.fmean(syncs[renders * i] for i in steady)
    truth = statistics.fmean(durations[2 * i + 1] for i in steady) if renders == 2 else None
    raster = renderer.phase_seconds.get(RASTER_PHASE)
    raster_cpu = getattr(renderer, "phase_cpu_seconds", {}).get(RASTER_PHASE)
    flame_blender.unregister()
    return {
        "device": summary.device,
        "sampling": picture - sync,
        "sync": sync,
        "truth": truth,
        "raster": raster / images if raster is not None else None,
        "raster_cpu": raster_cpu / images if raster_cpu is not None else None,
        "else": wall - picture - (truth or 0.0),
        "wall": wall,
        "rate": 1.0 / wall,
    }


def probe_gpu() -> list[str]:
    """Cycles' GPU backends with a device on this machine (child process)."""
    sys.path.insert(0, str(REPO_ROOT))
    import flame_blender

    flame_blender.register()
    from flame_blender.blender.render import device

    found = sorted(device.available_gpu_backends())
    flame_blender.unregister()
    return found


# -- the parent: runs children, prints tables ------------------------------------------------


def run_child(*arguments: str) -> dict | list:
    result = subprocess.run(
        [sys.executable, __file__, "--child", *arguments], capture_output=True, text=True
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    if result.returncode != 0 or not lines:
        raise RuntimeError(f"benchmark child failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def checkout(revision: str, folder: Path) -> Path:
    """Revision ``revision`` of this repository, extracted into ``folder``."""
    archive = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "archive", revision], capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder


def parse_config(text: str) -> tuple[int, int]:
    size, _, samples = text.lower().partition("x")
    return int(size), int(samples)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=["64x1", "256x16", "512x64"],
                        metavar="SIZExSAMPLES", help="square size and samples per pixel")
    parser.add_argument("--images", type=int, default=6, help="images per run (at least 3)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per figure (median)")
    parser.add_argument("--devices", nargs="+", default=None,
                        help="CPU and/or GPU (default: CPU, plus GPU when one is found)")
    parser.add_argument("--compare-with", default=None, metavar="REV",
                        help="also measure this git revision (e.g. the commit before a change)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--source", type=Path, default=REPO_ROOT, help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, default=256, help=argparse.SUPPRESS)
    parser.add_argument("--samples", type=int, default=16, help=argparse.SUPPRESS)
    parser.add_argument("--device", default="CPU", help=argparse.SUPPRESS)
    parser.add_argument("--probe", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        if args.probe:
            result = probe_gpu()
        else:
            result = measure(args.source, args.size, args.size, args.samples, args.device, args.images)
        print("RESULT " + json.dumps(result), flush=True)
        return 0

    if args.images < 3:
        parser.error("--images must be at least 3 (the first and last image are not counted)")
    devices = args.devices
    if devices is None:
        devices = ["CPU"] + (["GPU"] if run_child("--probe") else [])
    devices = [device.upper() for device in devices]
    with tempfile.TemporaryDirectory(prefix="flame-render-bench-rev-") as folder:
        sources = {"": REPO_ROOT}
        if args.compare_with:
            sources = {f" {args.compare_with}": checkout(args.compare_with, Path(folder)), " now": REPO_ROOT}
        for config in args.configs:
            size, samples = parse_config(config)
            columns: dict[str, list[dict]] = {}
            labels: dict[str, str] = {}
            for _ in range(args.repeats):  # alternate the code versions: the same noise for both
                for device in devices:
                    for tag, source in sources.items():
                        figures = run_child(
                            "--source", str(source), "--size", str(size), "--samples", str(samples),
                            "--device", "AUTO" if device == "GPU" else "CPU", "--images", str(args.images),
                        )
                        key = f"{device}{tag}"
                        columns.setdefault(key, []).append(figures)
                        labels[key] = f"{figures['device']}{tag}"
            print(f"\n{size}x{size}, {samples} samples per pixel: per image, median of "
                  f"{args.repeats} runs of {args.images} images (steady state)\n")
            print("| figure | " + " | ".join(labels[key] for key in columns) + " |")
            print("|---|" + "---|" * len(columns))
            for name, label in ROWS:
                cells = []
                for runs in columns.values():
                    values = [run[name] for run in runs if run.get(name) is not None]
                    if not values:
                        cells.append("–")
                        continue
                    value = statistics.median(values)
                    cells.append(f"{value:.2f}" if name == "rate" else f"{value * 1000:.1f}")
                print(f"| {label} | " + " | ".join(cells) + " |")
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
