"""Make docs/rig_gltf.png: a GLB exported by the native rig, re-imported with Blender's own glTF
importer (as a viewer would load it) and rendered with Cycles at four frames.

    python scripts/render_rig_picture.py [--out docs/rig_gltf.png] [--size 256] [--samples 16]

The GLB comes from ``scripts/export_head.py`` on a random 100-frame animation of the built-in
synthetic model. Blender's glTF importer keeps morph-target sliders at [0, 1] except for the
first key (see docs/export.md), so the sliders are widened to -10..10 after import, as glTF
itself has no range.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "scripts"))
os.environ.setdefault("BLENDER_USER_RESOURCES", tempfile.mkdtemp(prefix="flame-picture-user-"))

import bpy  # noqa: E402, I001
import numpy as np  # noqa: E402

import export_head  # noqa: E402

FRAMES = (1, 25, 50, 75)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "docs" / "rig_gltf.png")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--samples", type=int, default=16)
    args = parser.parse_args()
    package, _ = export_head.import_package()
    from flame_blender.core import FlameParameters
    from flame_blender.core.render.png import read_png, write_png

    rng = np.random.default_rng(4)
    shape = rng.normal(size=300)
    sequence = []
    for _ in range(100):
        p = FlameParameters.random(rng, 300, 100, pose_scale=0.25, expression_sigma=1.5)
        p.shape = shape
        p.transl = np.zeros(3)
        sequence.append(p)
    folder = Path(tempfile.mkdtemp(prefix="flame-picture-"))
    glb = export_head.export_head(package, None, sequence, folder / "head.glb", "GLB")

    bpy.ops.wm.read_homefile(use_empty=True)
    bpy.ops.import_scene.gltf(filepath=str(glb))
    scene = bpy.context.scene
    mesh = next(o for o in scene.objects if o.type == "MESH")
    for block in mesh.data.shape_keys.key_blocks[1:]:
        block.slider_min, block.slider_max = -10.0, 10.0
    camera = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
    scene.collection.objects.link(camera)
    camera.data.lens = 70.0
    camera.location = (0.0, -0.7, 0.0)
    camera.rotation_euler = (math.pi / 2, 0.0, 0.0)
    scene.camera = camera
    for name, rotation, energy in (("Key", (0.9, 0.0, 0.6), 3.0), ("Fill", (1.2, 0.0, -0.9), 1.0)):
        light = bpy.data.objects.new(name, bpy.data.lights.new(name, "SUN"))
        light.data.energy = energy
        light.rotation_euler = rotation
        scene.collection.objects.link(light)
    world = bpy.data.worlds.new("World")
    world.color = (0.05, 0.05, 0.06)
    scene.world = world
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = args.samples
    scene.render.resolution_x = scene.render.resolution_y = args.size
    scene.render.image_settings.file_format = "PNG"
    tiles = []
    for frame in FRAMES:
        scene.frame_set(frame)
        path = folder / f"frame_{frame:03d}.png"
        scene.render.filepath = str(path)
        bpy.ops.render.render(write_still=True)
        tiles.append(read_png(path)[..., :3])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_png(args.out, np.concatenate(tiles, axis=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
