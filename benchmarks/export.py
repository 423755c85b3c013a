"""How fast a FLAME head becomes a native rig and a file (bpy, built-in synthetic 300+100 model).

    python benchmarks/export.py [--frames 1000] [--repeats 3]

Prints one markdown table: Make Rig with the bake of an animated head (every pose joint and 100
expression coefficients keyed on every frame), then each export preset. Each rig is checked
against the NumPy forward pass on a few frames, so a fast but wrong rig cannot pass.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
os.environ.setdefault("BLENDER_USER_RESOURCES", tempfile.mkdtemp(prefix="flame-bench-user-"))

import bpy  # noqa: E402, I001  (bpy first: it makes addon_utils importable)
import addon_utils  # noqa: E402
import numpy as np  # noqa: E402

from flame_blender.blender import import_head  # noqa: E402
from flame_blender.blender import rig, rig_export  # noqa: E402
from flame_blender.blender.head_animation import animate_head  # noqa: E402
from flame_blender.core import FlameNumpy, FlameParameters, builtin_flame_dir  # noqa: E402


def sequence(frames: int, seed: int = 0) -> list[FlameParameters]:
    rng = np.random.default_rng(seed)
    shape = rng.normal(size=300)
    out = []
    for _ in range(frames):
        p = FlameParameters.random(rng, 300, 100, pose_scale=0.3)
        p.shape = shape
        out.append(p)
    return out


def animated_head(params: list[FlameParameters]):
    bpy.ops.wm.read_homefile(use_empty=True)
    scene = bpy.context.scene
    scene.frame_start, scene.frame_end = 1, len(params)
    head = import_head(bpy.context, builtin_flame_dir(), n_shape=300, n_expression=100)
    animate_head(head, params, first_frame=1)
    return head


def check(mesh, params: list[FlameParameters], model: FlameNumpy) -> float:
    scene = bpy.context.scene
    worst = 0.0
    for frame in (1, len(params) // 2, len(params)):
        scene.frame_set(frame)
        evaluated = mesh.evaluated_get(bpy.context.evaluated_depsgraph_get())
        data = evaluated.to_mesh()
        co = np.empty(len(data.vertices) * 3, dtype=np.float32)
        data.vertices.foreach_get("co", co)
        evaluated.to_mesh_clear()
        p = params[frame - 1]
        kwargs = {k: np.asarray(v, dtype=np.float32).astype(np.float64) for k, v in p.forward_kwargs().items()}
        worst = max(worst, float(np.abs(co.reshape(-1, 3) - model(**kwargs)).max()))
    return worst


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=1000)
    parser.add_argument("--export-frames", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    addon_utils.enable("flame_blender", default_set=True)
    model = FlameNumpy(builtin_flame_dir())
    rows = []

    params = sequence(args.frames)
    times, error = [], 0.0
    for _ in range(args.repeats):
        head = animated_head(params)
        bpy.context.view_layer.objects.active = head
        start = time.perf_counter()
        armature, mesh = rig.make_rig(bpy.context, head, bake="FRAME_RANGE")
        times.append(time.perf_counter() - start)
        error = max(error, check(mesh, params, model))
    rows.append((f"Make Rig + bake, {args.frames} frames", statistics.median(times), f"max error {error:.1e} m"))

    out_dir = Path(tempfile.mkdtemp(prefix="flame-export-bench-"))
    for frames in args.export_frames:
        params = sequence(frames)
        head = animated_head(params)
        bpy.context.view_layer.objects.active = head
        armature, _ = rig.make_rig(bpy.context, head, bake="FRAME_RANGE")
        formats = ["GLB", "FBX_UNITY", "ABC"] + (["USD"] if rig_export.usd_available() else [])
        for file_format in formats:
            path = out_dir / f"head_{frames}{rig_export.FORMATS[file_format][1]}"
            start = time.perf_counter()
            rig_export.export_rig(armature, path, file_format)
            seconds = time.perf_counter() - start
            rows.append((f"export {file_format}, {frames} frames", seconds, f"{path.stat().st_size / 1e6:.1f} MB"))

    print(f"\nbpy {bpy.app.version_string}, {os.cpu_count()} CPUs\n")
    print("| step | seconds | note |")
    print("|---|---|---|")
    for name, seconds, note in rows:
        print(f"| {name} | {seconds:.2f} | {note} |")


if __name__ == "__main__":
    main()
