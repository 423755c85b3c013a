"""Render-farm check: the rigged .blend rendered by a NEW process without the extension gives
the same pictures as the live head rendered with it (same Cycles seed and samples); the depth
and normal passes agree to float precision."""

from __future__ import annotations

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

from test_rig_blender import run_fresh_blender  # noqa: E402

from flame_blender.blender import import_head  # noqa: E402
from flame_blender.blender import rig as rig_module  # noqa: E402
from flame_blender.blender.head_animation import animate_head  # noqa: E402
from flame_blender.core import FlameParameters  # noqa: E402
from flame_blender.core.render.exr import read_exr  # noqa: E402

FRAMES = 3

RENDER_ANIMATION = """
import sys
import bpy
blend, output = sys.argv[1:3]
bpy.context.preferences.filepaths.use_scripts_auto_execute = False
bpy.ops.wm.open_mainfile(filepath=blend, load_ui=False)
assert not hasattr(bpy.types.Object, "flame")
bpy.context.scene.render.filepath = output
bpy.ops.render.render(animation=True)
"""


def _setup_render(scene) -> None:
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = 4
    scene.cycles.seed = 3
    scene.cycles.use_denoising = False
    scene.render.resolution_x = scene.render.resolution_y = 48
    scene.render.resolution_percentage = 100
    scene.view_layers[0].use_pass_z = True
    scene.view_layers[0].use_pass_normal = True
    settings = scene.render.image_settings
    if hasattr(settings, "media_type"):
        settings.media_type = "MULTI_LAYER_IMAGE"
    settings.file_format = "OPEN_EXR_MULTILAYER"
    settings.color_depth = "32"
    camera = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
    scene.collection.objects.link(camera)
    camera.location = (0.0, -0.9, 0.05)
    camera.rotation_euler = (np.pi / 2, 0.0, 0.0)
    scene.camera = camera
    light = bpy.data.objects.new("Light", bpy.data.lights.new("Light", "SUN"))
    scene.collection.objects.link(light)
    light.rotation_euler = (0.6, 0.2, 0.3)


def _channels(folder, prefix: str, frame: int) -> dict[str, np.ndarray]:
    return read_exr(folder / f"{prefix}{frame:04d}.exr")


def test_farm_render_without_extension(blender_scene, flame_dir, tmp_path):
    scene = blender_scene
    head = import_head(bpy.context, flame_dir, n_shape=20, n_expression=20, name="FLAME")
    rng = np.random.default_rng(11)
    sequence = [FlameParameters.random(rng, 20, 20, pose_scale=0.5) for _ in range(FRAMES)]
    for params in sequence:
        params.transl = np.zeros(3)
        params.shape = sequence[0].shape  # one identity, animated expression and pose
    animate_head(head, sequence, first_frame=1)
    scene.frame_start, scene.frame_end = 1, FRAMES
    _setup_render(scene)
    scene.render.filepath = str(tmp_path / "live_")
    bpy.ops.render.render(animation=True)  # the live head, kept exact by the extension's handlers

    bpy.context.view_layer.objects.active = head
    rig_module.make_rig(bpy.context, head, bake="FRAME_RANGE", keep_live=False)
    blend = tmp_path / "rigged.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    run_fresh_blender(RENDER_ANIMATION, str(blend), str(tmp_path / "farm_"), tmp_path=tmp_path)

    layer = scene.view_layers[0].name
    for frame in range(1, FRAMES + 1):
        live = _channels(tmp_path, "live_", frame)
        farm = _channels(tmp_path, "farm_", frame)
        depth_live, depth_farm = live[f"{layer}.Depth.Z"], farm[f"{layer}.Depth.Z"]
        hit = depth_live < 1e9
        assert hit.sum() > 200  # the head fills part of the picture
        assert np.array_equal(hit, depth_farm < 1e9)
        print(f"MEASURED farm frame {frame}: depth {np.abs(depth_live[hit] - depth_farm[hit]).max():.1e} m, "
              f"colour {max(np.abs(live[f'{layer}.Combined.{c}'] - farm[f'{layer}.Combined.{c}']).max() for c in 'RGB'):.1e}")
        assert np.abs(depth_live[hit] - depth_farm[hit]).max() < 1e-5
        for axis in "XYZ":
            assert np.abs(live[f"{layer}.Normal.{axis}"] - farm[f"{layer}.Normal.{axis}"]).max() < 1e-3
        for channel in "RGB":
            difference = np.abs(live[f"{layer}.Combined.{channel}"] - farm[f"{layer}.Combined.{channel}"])
            assert difference.max() < 1e-3, (frame, channel, difference.max())
    # The frames differ from one another: the animation really plays on the farm.
    first, last = _channels(tmp_path, "farm_", 1), _channels(tmp_path, "farm_", FRAMES)
    assert np.abs(first[f"{layer}.Depth.Z"] - last[f"{layer}.Depth.Z"]).max() > 1e-3
