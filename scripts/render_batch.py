"""Render a synthetic FLAME dataset headless with Cycles: pictures plus ground truth.

Runs inside Blender or under the ``bpy`` module, with the same arguments::

    blender --background --python-exit-code 1 --python scripts/render_batch.py -- --out data --num 100
    python scripts/render_batch.py --out data --num 100

Exit status: 0 all samples done, 1 some samples failed (see index.jsonl), 2 bad input (nothing
was written). See the README section "Rendering" for the output layout and conventions.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from script_support import add_repository_to_path, import_package, script_arguments  # noqa: E402

DEVICES = ("AUTO", "OPTIX", "CUDA", "HIP", "ONEAPI", "METAL", "CPU")



def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="render_batch.py",
        description="Render FLAME heads with Cycles: RGB, depth, normals, segmentation labels, "
        "cameras, parameters and 2D/3D landmarks per sample.",
    )
    parser.add_argument("--flame-dir", type=Path, default=None,
                        help="FLAME folder (default: the built-in synthetic model)")
    parser.add_argument("--out", type=Path, required=False, help="output folder")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--num", type=int, default=None,
                        help="number of random samples (default 8)")
    source.add_argument("--params", type=Path, default=None,
                        help="per-sample FLAME parameters: .jsonl (one object a line) or .npz "
                        "(arrays with a leading sample axis)")
    source.add_argument("--sequence", type=Path, default=None, metavar="FILE_OR_FOLDER",
                        help="a tracked sequence (VHAP, metrical-tracker, ... see README): one "
                        "sample per frame")
    parser.add_argument("--camera", choices=("tracked", "studio"), default="tracked",
                        help="with --sequence: the tracker's camera (default) or one studio camera")
    parser.add_argument("--frames", default=None, metavar="A:B",
                        help="with --sequence: only frame ids A to B (inclusive)")
    parser.add_argument("--overlay", type=Path, default=None, metavar="FRAMES_DIR",
                        help="with --sequence: also write the head over the source frames "
                        "(images named by frame number)")
    parser.add_argument("--seed", type=int, default=0,
                        help="random seed: sample i depends only on (seed, i) (default 0)")
    parser.add_argument("--resolution", type=int, nargs=2, metavar=("W", "H"), default=(256, 256))
    parser.add_argument("--samples", type=int, default=16, help="Cycles samples per pixel")
    parser.add_argument("--device", type=str.upper, default="AUTO", choices=DEVICES,
                        help="Cycles device; AUTO picks the best GPU backend, else the CPU")
    parser.add_argument("--shard", default="0/1", metavar="K/N",
                        help="render only shard K of N (K counts from 0), e.g. $SLURM_ARRAY_TASK_ID/N")
    parser.add_argument("--landmarks", nargs="+", default=["mediapipe", "ibug68"],
                        metavar="SET",
                        help="landmark sets: mediapipe, ibug68, ibug51, ibug68_dynamic, or none")
    parser.add_argument("--ranges", default=None,
                        help="sampling ranges as JSON, inline or a .json file, e.g. "
                        "'{\"camera_azimuth\": [-60, 60]}' (see core/render/dataset.py)")
    parser.add_argument("--transparent", action="store_true",
                        help="transparent background in the RGB pictures")
    parser.add_argument("--no-denoise", action="store_true", help="turn Cycles' denoiser off")
    parser.add_argument("--denoise-prefilter", type=str.upper, default="FAST",
                        choices=("FAST", "ACCURATE", "NONE"),
                        help="denoiser prefilter of the albedo and normal guides: FAST (default; "
                        "they are clean for a head), ACCURATE (denoise them first, slower)")
    parser.add_argument("--contact-sheet", type=Path, default=None, metavar="PATH",
                        help="also write a PNG contact sheet of the finished samples")
    parser.add_argument("--merge-manifests", action="store_true",
                        help="only merge the shards' index.shard-K-of-N.jsonl into index.jsonl")
    return parser



def main(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(script_arguments(argv))
    if args.out is None:
        parser.error("--out is required")
    add_repository_to_path()

    if args.merge_manifests:
        from flame_blender.core.errors import FlameFileError
        from flame_blender.core.render.manifest import merge_manifests

        try:
            path, counts = merge_manifests(args.out)
        except FlameFileError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        print(f"merged into {path}: {counts}")
        return 1 if counts.get("failed") or counts.get("pending") else 0

    from flame_blender.core.errors import FlameParameterError
    from flame_blender.core.render.dataset import SamplingRanges, parse_shard

    try:
        shard, shards = parse_shard(args.shard)
        ranges = SamplingRanges()
        if args.ranges:
            text = args.ranges
            if not text.lstrip().startswith("{"):
                text = Path(text).read_text(encoding="utf-8")
            ranges = SamplingRanges.from_dict(json.loads(text))
    except (FlameParameterError, OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    package, registered = import_package()
    try:
        return render(package, args, shard, shards, ranges)
    finally:
        if registered:
            # Leave nothing registered at exit: the bpy 4.2 module crashes at interpreter
            # shutdown while an add-on's preferences class is still registered.
            package.unregister()


def render(package, args: argparse.Namespace, shard: int, shards: int, ranges) -> int:
    batch = importlib.import_module(f"{package.__name__}.blender.render.batch")
    settings = batch.BatchSettings(
        out=args.out,
        flame_dir=args.flame_dir,
        count=8 if args.num is None else args.num,
        seed=args.seed,
        params_file=args.params,
        resolution=tuple(args.resolution),
        samples=args.samples,
        device=args.device,
        shard=shard,
        shards=shards,
        landmark_sets=tuple(name for name in args.landmarks if name.lower() != "none"),
        ranges=ranges,
        transparent=args.transparent,
        denoise=not args.no_denoise,
        denoise_prefilter=args.denoise_prefilter,
    )
    if args.sequence is not None:
        adapter = importlib.import_module(f"{package.__name__}.blender.render.sequence_batch")
        renderer = adapter.SequenceBatchRenderer(
            settings, args.sequence, camera=args.camera, frames=args.frames, overlay=args.overlay
        )
    else:
        renderer = batch.BatchRenderer(settings)
    try:
        renderer.prepare()
    except batch.BatchInputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    summary = renderer.run()
    print(
        f"done: {summary.rendered} rendered, {summary.skipped} already done, "
        f"{summary.failed} failed" + (f" on {summary.device}" if summary.device else ""),
        flush=True,
    )
    for name, message in summary.failures:
        print(f"  failed {name}: {message}", file=sys.stderr)
    if args.contact_sheet is not None:
        sheet = renderer.write_contact_sheet(args.contact_sheet)
        print(f"contact sheet: {sheet}" if sheet else "contact sheet: no finished samples")
    return summary.exit_status


def exit_now(status: int) -> None:
    """Exit with ``status``, working around a crash of the bpy 4.x module at shutdown.

    The bpy module of Blender 4.2 segfaults while Python shuts down once any
    ``bpy.app.timers`` timer was ever registered (enabling the extension registers one), which
    would turn every exit status into -11. Under that module, after flushing, skip the
    shutdown; every output file is already complete (atomic writes). Blender itself and the
    5.x module exit normally.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    bpy = sys.modules.get("bpy")
    if bpy is not None and not bpy.app.binary_path and bpy.app.version < (5, 0, 0):
        os._exit(status)
    sys.exit(status)


if __name__ == "__main__":
    exit_now(main(sys.argv))
