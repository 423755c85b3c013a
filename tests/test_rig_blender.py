"""The native rig against FLAME: in a fresh Blender process without the extension, after
Blender's own glTF exporter (evaluated by a numpy glTF reader written from the spec), and after
FBX, Alembic and USD round trips through Blender's own exporters and importers.

The animation has 100 frames with every pose joint, the translation and 100 expression
coefficients moving. References: the float64 NumPy FLAME of the same (float32-rounded) values.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

from flame_blender.blender import import_head, rig_export  # noqa: E402
from flame_blender.blender import rig as rig_module  # noqa: E402
from flame_blender.blender.head_animation import animate_head  # noqa: E402
from flame_blender.core import FlameNumpy, FlameParameters  # noqa: E402
from flame_blender.core.rig import BONE_NAMES, corrective_key_names  # noqa: E402

FRAMES = 100
RIG_TOLERANCE = 1e-5  # metres, the rig in Blender
FILE_TOLERANCE = 1e-4  # metres, exported files


def _sequence(rng) -> list[FlameParameters]:
    shape = rng.normal(size=300)
    out = []
    for _ in range(FRAMES):
        p = FlameParameters.zeros(300, 100)
        p.shape = shape
        p.expression = rng.normal(size=100)
        for name, size in (("global_pose", 3), ("neck_pose", 3), ("jaw_pose", 3), ("eye_pose", 6)):
            setattr(p, name, rng.normal(scale=0.3, size=size))
        p.transl = rng.normal(scale=0.05, size=3)
        out.append(p)
    return out


@pytest.fixture(scope="module")
def rigged(blender_addon, flame_dir, tmp_path_factory):
    """(blend path, reference vertices (100, 5023, 3) in FLAME coordinates, head world matrix)."""
    bpy.ops.wm.read_homefile(use_empty=True)
    scene = bpy.context.scene
    head = import_head(bpy.context, flame_dir, n_shape=300, n_expression=100, name="FLAME")
    head.location = (0.1, -0.2, 0.3)  # a transform of its own: the rig must keep it
    sequence = _sequence(np.random.default_rng(7))
    animate_head(head, sequence, first_frame=1)
    scene.frame_start, scene.frame_end = 1, FRAMES
    with bpy.context.temp_override(active_object=head, object=head):
        assert bpy.ops.flame.make_rig(bake="FRAME_RANGE", keep_live=False) == {"FINISHED"}
    bpy.context.view_layer.update()
    matrix = np.array(bpy.data.objects["FLAME_rig"].matrix_world)
    path = tmp_path_factory.mktemp("rig") / "rig.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(path))
    f32 = lambda name: np.stack([getattr(p, name) for p in sequence]).astype(np.float32).astype(np.float64)  # noqa: E731
    reference = FlameNumpy(flame_dir)(
        shape_params=f32("shape"), expression_params=f32("expression"), global_pose=f32("global_pose"),
        neck_pose=f32("neck_pose"), jaw_pose=f32("jaw_pose"), eye_pose=f32("eye_pose"), transl=f32("transl"),
    )
    return path, reference, matrix


def world(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    return points @ matrix[:3, :3].T + matrix[:3, 3]


def evaluated_world(obj) -> np.ndarray:
    depsgraph = bpy.context.evaluated_depsgraph_get()
    evaluated = obj.evaluated_get(depsgraph)
    mesh = evaluated.to_mesh()
    try:
        out = np.empty(len(mesh.vertices) * 3, dtype=np.float32)
        mesh.vertices.foreach_get("co", out)
        matrix = np.array(evaluated.matrix_world)
    finally:
        evaluated.to_mesh_clear()
    return world(out.reshape(-1, 3).astype(np.float64), matrix)


FRESH_PROCESS = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import bpy
    blend, out, mode = sys.argv[1:4]
    bpy.context.preferences.filepaths.use_scripts_auto_execute = False  # no Python in the file
    bpy.ops.wm.open_mainfile(filepath=blend, load_ui=False)
    facts = {
        "extension_modules": sorted(m for m in sys.modules if "flame" in m.lower()),
        "flame_property": hasattr(bpy.types.Object, "flame"),
        "simple": [c.driver.is_simple_expression for c in bpy.data.objects["FLAME"].data.shape_keys.animation_data.drivers],
    }
    mesh = bpy.data.objects["FLAME"]
    if mode == "drivers_only":  # delete the corrective keyframes: the drivers alone must do it
        action = mesh.data.shape_keys.animation_data.action
        bag = action.layers[0].strips[0].channelbags[0] if hasattr(action, "layers") else action
        for curve in [c for c in bag.fcurves if c.data_path.startswith('key_blocks["pose_')]:
            bag.fcurves.remove(curve)
    scene = bpy.context.scene
    frames = []
    for frame in range(scene.frame_start, scene.frame_end + 1):
        scene.frame_set(frame)
        evaluated = mesh.evaluated_get(bpy.context.evaluated_depsgraph_get())
        m = evaluated.to_mesh()
        co = np.empty(len(m.vertices) * 3, dtype=np.float32)
        m.vertices.foreach_get("co", co)
        evaluated.to_mesh_clear()
        frames.append(co.reshape(-1, 3))
    np.save(out, np.stack(frames))
    print("FACTS" + json.dumps(facts))
    """
)


def run_fresh_blender(script: str, *args: str, tmp_path) -> str:
    """Run ``script`` in a new Python with only the bpy module: the repository is not on the path
    and a throw-away user folder holds no extensions."""
    script_path = tmp_path / "fresh.py"
    script_path.write_text(script)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    env["BLENDER_USER_RESOURCES"] = str(tmp_path / "user")
    result = subprocess.run(
        [sys.executable, str(script_path), *args], cwd=tmp_path, env=env,
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.mark.parametrize("mode", ["keyframes_and_drivers", "drivers_only"])
def test_rig_exact_without_extension(rigged, tmp_path, mode):
    path, reference, _ = rigged
    out = tmp_path / "frames.npy"
    stdout = run_fresh_blender(FRESH_PROCESS, str(path), str(out), mode, tmp_path=tmp_path)
    facts = json.loads(stdout.split("FACTS", 1)[1].splitlines()[0])
    assert facts["extension_modules"] == [] and not facts["flame_property"]
    assert len(facts["simple"]) == 36 and all(facts["simple"])
    frames = np.load(out).astype(np.float64)
    assert frames.shape == (FRAMES, 5023, 3)
    errors = np.abs(frames - reference).max(axis=(1, 2))
    print(f"MEASURED rig without extension ({mode}): {errors.max():.2e} m")
    assert errors.max() <= RIG_TOLERANCE, errors.max()
    # Every joint and the expression really move the mesh on every frame.
    assert np.abs(np.diff(frames, axis=0)).max(axis=(1, 2)).min() > 1e-3


def test_rig_layout(rigged):
    path, _, _ = rigged
    bpy.ops.wm.open_mainfile(filepath=str(path))
    armature = bpy.data.objects["FLAME_rig"]
    mesh = bpy.data.objects["FLAME"]
    assert [b.name for b in armature.data.bones] == list(BONE_NAMES)
    for bone in armature.data.bones:
        rotation = np.array(bone.matrix_local)[:3, :3]
        assert np.abs(rotation - np.eye(3)).max() < 1e-6  # identity rest orientation
    names = [k.name for k in mesh.data.shape_keys.key_blocks]
    assert names[1:101] == [f"expr_{i:03d}" for i in range(100)]
    assert names[101:] == corrective_key_names()
    blocks = mesh.data.shape_keys.key_blocks
    assert (blocks["expr_000"].slider_min, blocks["expr_000"].slider_max) == (-10.0, 10.0)
    assert (blocks["pose_jaw_00"].slider_min, blocks["pose_jaw_00"].slider_max) == (-2.0, 2.0)
    assert mesh.modifiers[0].type == "ARMATURE" and mesh.modifiers[0].object == armature
    assert not [o for o in bpy.data.objects if rig_module.head_module.is_head(o)]  # replaced


Y_UP = np.array([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]])  # Blender world (z up) -> glTF (y up)


@pytest.mark.parametrize("file_format", ["GLB", "GLTF"])
def test_gltf_evaluated_in_numpy(rigged, tmp_path, file_format):
    from gltf_numpy import Gltf

    path, reference, matrix = rigged
    bpy.ops.wm.open_mainfile(filepath=str(path))
    armature = bpy.data.objects["FLAME_rig"]
    mesh = bpy.data.objects["FLAME"]
    base = np.empty(5023 * 3, dtype=np.float32)
    mesh.data.vertices.foreach_get("co", base)
    out = rig_export.export_rig(armature, tmp_path / f"head{'.glb' if file_format == 'GLB' else '.gltf'}", file_format)
    gltf = Gltf(out)
    to_gl = lambda p: world(p, matrix) @ Y_UP.T  # noqa: E731
    # Exporters split vertices at UV seams: match each glTF vertex to its FLAME vertex.
    index = _nearest(gltf.rest_positions(), to_gl(base.reshape(-1, 3).astype(np.float64)))
    assert len(gltf.json["animations"]) == 1  # bones and morph weights play as one animation
    times = gltf.animation_times()
    fps = bpy.context.scene.render.fps
    assert np.allclose(times, np.arange(1, FRAMES + 1) / fps, atol=1e-6)  # one sample a frame
    errors = [np.abs(gltf.evaluate(t) - to_gl(reference[i])[index]).max() for i, t in enumerate(times)]
    print(f"MEASURED {file_format} in numpy: {max(errors):.2e} m")
    assert max(errors) <= FILE_TOLERANCE, max(errors)
    names = gltf.json["meshes"][0]["extras"]["targetNames"]
    assert names == [f"expr_{i:03d}" for i in range(100)] + corrective_key_names()
    # Blender's own importer brings back every morph target with its animation. (It widens a
    # slider range only to the first key's weight, so it is not asked to keep the values.)
    bpy.ops.wm.read_homefile(use_empty=True)
    bpy.ops.import_scene.gltf(filepath=str(out))
    imported = next(o for o in bpy.data.objects if o.type == "MESH")
    assert [k.name for k in imported.data.shape_keys.key_blocks][1:] == names
    curves = [c for c in _fcurves(imported.data.shape_keys.animation_data.action) if c.data_path.startswith("key_blocks")]
    assert len(curves) == 136 and all(len(c.keyframe_points) == FRAMES for c in curves)
    # With the sliders opened to the rig's ranges, Blender's importer gives FLAME back too.
    for block in imported.data.shape_keys.key_blocks[1:]:
        block.slider_min, block.slider_max = -10.0, 10.0
    scene = bpy.context.scene
    scene.frame_set(1)
    rest = np.empty(len(imported.data.vertices) * 3, dtype=np.float32)
    imported.data.vertices.foreach_get("co", rest)  # bind pose (before the Armature modifier)
    rest = world(rest.reshape(-1, 3).astype(np.float64), np.array(imported.matrix_world))
    index = _nearest(rest, world(base.reshape(-1, 3).astype(np.float64), matrix))
    worst = 0.0
    for frame in range(1, FRAMES + 1, 9):
        scene.frame_set(frame)
        expected = world(reference[frame - 1], matrix)[index]
        worst = max(worst, float(np.abs(evaluated_world(imported) - expected).max()))
    print(f"MEASURED {file_format} via Blender's glTF importer: {worst:.2e} m")
    assert worst <= FILE_TOLERANCE


def _nearest(points: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Index of the target each point was made from (bind positions agree to 1e-6 m)."""
    index = np.empty(points.shape[0], dtype=np.int64)
    for start in range(0, points.shape[0], 512):
        distance = ((points[start : start + 512, None] - targets[None]) ** 2).sum(-1)
        index[start : start + 512] = distance.argmin(1)
        assert np.sqrt(distance.min(1)).max() < 1e-5
    return index


def _assert_values_within_sliders(obj) -> None:
    key = obj.data.shape_keys
    assert key is not None and len(key.key_blocks) == 137
    action = key.animation_data.action if key.animation_data else None
    curves = [c for c in _fcurves(action) if c.data_path.startswith("key_blocks")]
    assert curves, "the shape-key animation did not come back"
    for curve in curves:
        block = key.path_resolve(curve.data_path.rpartition(".")[0])
        values = np.array([p.co[1] for p in curve.keyframe_points])
        assert block.slider_min <= values.min() + 1e-6 and values.max() - 1e-6 <= block.slider_max, block.name


def _fcurves(action) -> list:
    if action is None:
        return []
    if hasattr(action, "layers") and action.layers:
        return [c for strip in action.layers[0].strips for bag in strip.channelbags for c in bag.fcurves]
    return list(getattr(action, "fcurves", []))


def fbx_global_settings(path) -> tuple[float, int]:
    """(UnitScaleFactor, UpAxis) of an FBX file, through Blender's io_scene_fbx parser."""
    scripts = os.path.join(bpy.utils.system_resource("SCRIPTS"), "addons_core")
    if scripts not in sys.path:
        sys.path.append(scripts)
    from io_scene_fbx import parse_fbx

    root, _ = parse_fbx.parse(str(path))
    settings = next(e for e in root.elems if e.id == b"GlobalSettings")
    properties = next(e for e in settings.elems if e.id == b"Properties70")
    values = {e.props[0]: e.props[4] for e in properties.elems}
    return float(values[b"UnitScaleFactor"]), int(values[b"UpAxis"])


@pytest.mark.parametrize("file_format", ["FBX_UNITY", "FBX_UNREAL", "ABC", "USD"])
def test_reimport_with_blender(rigged, tmp_path, file_format):
    if file_format == "USD" and not rig_export.usd_available():
        pytest.skip("this bpy has no USD support")
    path, reference, matrix = rigged
    bpy.ops.wm.open_mainfile(filepath=str(path))
    extension = rig_export.FORMATS[file_format][1]
    out = rig_export.export_rig(bpy.data.objects["FLAME_rig"], tmp_path / f"head{extension}", file_format)
    if file_format.startswith("FBX"):
        # What the preset promises, read by Blender's own FBX parser: Unity metres (1 unit =
        # 100 cm) and Y up; Unreal centimetres and Z up.
        unit, up_axis = fbx_global_settings(out)
        assert (unit, up_axis) == ((100.0, 1) if file_format == "FBX_UNITY" else (1.0, 2))
    bpy.ops.wm.read_homefile(use_empty=True)
    scene = bpy.context.scene
    scene.frame_start, scene.frame_end = 1, FRAMES
    if file_format.startswith("FBX"):
        # anim_offset=0: the importer otherwise shifts animation by one frame (its default).
        assert bpy.ops.import_scene.fbx(filepath=str(out), anim_offset=0.0) == {"FINISHED"}
    elif file_format == "ABC":
        assert bpy.ops.wm.alembic_import(filepath=str(out)) == {"FINISHED"}
    else:
        assert bpy.ops.wm.usd_import(filepath=str(out)) == {"FINISHED"}
    mesh = next(o for o in bpy.data.objects if o.type == "MESH")
    errors = []
    for frame in range(1, FRAMES + 1):
        scene.frame_set(frame)
        errors.append(np.abs(evaluated_world(mesh) - world(reference[frame - 1], matrix)).max())
    print(f"MEASURED {file_format} re-imported: {max(errors):.2e} m")
    assert max(errors) <= FILE_TOLERANCE, max(errors)
    if file_format.startswith("FBX"):
        _assert_values_within_sliders(mesh)
