"""Make Rig and Export: bad input gets a clear error and leaves the file as it was; the
current-frame bake and the identity-as-shape-keys option against the live head."""

from __future__ import annotations

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

from flame_blender.blender import rig as rig_module  # noqa: E402
from flame_blender.blender import rig_export  # noqa: E402
from flame_blender.core import FlameFileError, FlameParameterError, FlameParameters  # noqa: E402


def snapshot() -> dict:
    collections = ("objects", "meshes", "armatures", "actions", "shape_keys")
    return {name: sorted(block.name for block in getattr(bpy.data, name)) for name in collections}


def _select_only(obj) -> None:
    for other in bpy.context.view_layer.objects:
        other.select_set(False)
    obj.select_set(True)
    bpy.context.view_layer.objects.active = obj


def test_no_head(blender_scene):
    bpy.ops.object.empty_add()
    before = snapshot()
    assert not bpy.ops.flame.make_rig.poll()
    with pytest.raises(FlameParameterError, match="not a FLAME head"):
        rig_module.make_rig(bpy.context, bpy.context.active_object)
    assert snapshot() == before


def test_missing_model(small_head):
    small_head.flame.model_path = "/no/such/folder/generic_model.pkl"
    _select_only(small_head)
    before = snapshot()
    with pytest.raises(FlameFileError):
        rig_module.make_rig(bpy.context, small_head)
    with pytest.raises(RuntimeError, match="Make Rig failed: .*no such file"):
        bpy.ops.flame.make_rig()  # the operator's error report (a RuntimeError from Python)
    assert snapshot() == before


def test_unwritable_paths(small_head, tmp_path):
    _select_only(small_head)
    armature, mesh = rig_module.make_rig(bpy.context, small_head, bake="CURRENT", keep_live=True)
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    _select_only(small_head)
    scene = bpy.context.scene
    state = (snapshot(), scene.frame_current, [o.name for o in bpy.context.selected_objects])
    for bad in (tmp_path / "missing" / "head.glb", a_file / "head.fbx", tmp_path):
        with pytest.raises(OSError, match="head|folder"):
            rig_export.export_rig(armature, bad, "GLB")
    assert (snapshot(), scene.frame_current, [o.name for o in bpy.context.selected_objects]) == state
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt"]
    with pytest.raises(ValueError, match="not a FLAME rig"):
        rig_export.export_rig(small_head, tmp_path / "x.glb", "GLB")
    _select_only(armature)
    with pytest.raises(RuntimeError, match="Export failed: .*does not exist"):
        bpy.ops.flame.export_rig(filepath=str(tmp_path / "missing" / "x.glb"), format="GLB")


def test_current_frame_keep_live(small_head, evaluated_vertices):
    from flame_blender.blender import set_parameters

    params = FlameParameters.random(np.random.default_rng(2), 10, 5, pose_scale=0.4)
    params.transl = np.array([0.01, -0.02, 0.03])
    set_parameters(small_head, params)
    small_head.rotation_euler = (1.2, 0.3, -0.4)
    _select_only(small_head)
    assert bpy.ops.flame.make_rig(bake="CURRENT", keep_live=True) == {"FINISHED"}
    bpy.context.view_layer.update()
    armature = bpy.context.active_object
    assert armature.type == "ARMATURE" and armature.animation_data is None
    rigged = next(o for o in armature.children if o.type == "MESH")
    live = evaluated_vertices(small_head) @ np.array(small_head.matrix_world)[:3, :3].T
    ours = evaluated_vertices(rigged) @ np.array(rigged.matrix_world)[:3, :3].T
    assert np.abs(live - ours).max() < 1e-5
    assert small_head.name in bpy.data.objects  # kept


def test_identity_as_shape_keys_and_animated_identity(small_head, evaluated_vertices, flame_reference):
    obj = small_head
    blocks = obj.data.shape_keys.key_blocks
    scene = bpy.context.scene
    scene.frame_start, scene.frame_end = 1, 3
    for frame, value in ((1, 0.0), (3, 2.0)):
        blocks["shape_001"].value = value
        blocks["shape_001"].keyframe_insert("value", frame=frame)
    obj.flame.jaw_pose = (0.3, 0.0, 0.1)
    _select_only(obj)
    before = snapshot()
    with pytest.raises(FlameParameterError, match="identity"):
        rig_module.make_rig(bpy.context, obj)
    assert snapshot() == before
    armature, mesh = rig_module.make_rig(bpy.context, obj, keep_live=True, identity_as_shape_keys=True)
    assert "shape_009" in mesh.data.shape_keys.key_blocks
    for frame in (1, 2, 3):
        scene.frame_set(frame)
        params = FlameParameters.zeros(10, 5)
        params.shape[1] = blocks["shape_001"].value  # the live head's animated value
        params.jaw_pose = np.array([0.3, 0.0, 0.1], dtype=np.float32).astype(np.float64)
        assert np.abs(evaluated_vertices(mesh) - flame_reference(params)).max() < 1e-5, frame


def test_object_animation_moves_the_rig(small_head):
    """Keys on the head's own transform carry over to the armature."""
    obj = small_head
    scene = bpy.context.scene
    scene.frame_start, scene.frame_end = 1, 5
    obj.flame.jaw_pose = (0.2, 0.0, 0.0)
    obj.keyframe_insert("flame.jaw_pose", frame=1)
    for frame, x in ((1, 0.0), (5, 0.4)):
        obj.location.x = x
        obj.keyframe_insert("location", index=0, frame=frame)
    expected = {}
    for frame in (1, 3, 5):
        scene.frame_set(frame)
        expected[frame] = np.array(obj.matrix_world)
    _select_only(obj)
    armature, mesh = rig_module.make_rig(bpy.context, obj, keep_live=True)
    for frame in (1, 3, 5):
        scene.frame_set(frame)
        assert np.abs(np.array(mesh.matrix_world) - expected[frame]).max() < 1e-6, frame


def test_export_panel(small_head):
    from flame_blender.blender.rig_operators import FLAME_PT_export

    assert FLAME_PT_export.is_registered
    _select_only(small_head)
    assert FLAME_PT_export.poll(bpy.context)
    armature, _ = rig_module.make_rig(bpy.context, small_head, bake="CURRENT", keep_live=True)
    _select_only(armature)
    assert FLAME_PT_export.poll(bpy.context) and bpy.ops.flame.export_rig.poll()
    bpy.ops.object.empty_add()
    assert not FLAME_PT_export.poll(bpy.context)


def test_failure_half_way_leaves_nothing(small_head, monkeypatch):
    """A failure after the first datablocks exist (injected into the last step) removes them."""
    obj = small_head
    obj.flame.jaw_pose = (0.2, 0.0, 0.0)
    obj.keyframe_insert("flame.jaw_pose", frame=1)
    _select_only(obj)
    before = snapshot()

    def broken(*args, **kwargs):
        raise RuntimeError("injected")

    monkeypatch.setattr(rig_module, "_copy_transform_curves", broken)
    with pytest.raises(RuntimeError, match="injected"):
        rig_module.make_rig(bpy.context, obj)
    assert snapshot() == before
    assert obj.name in bpy.data.objects and rig_module.head_module.is_head(obj)


def test_driven_head_baked_through_the_depsgraph(small_head, evaluated_vertices):
    """A driver on a coefficient (not plain F-curves): values are read frame by frame."""
    obj = small_head
    scene = bpy.context.scene
    scene.frame_start, scene.frame_end = 1, 3
    curve = obj.data.shape_keys.key_blocks["expr_002"].driver_add("value")
    curve.driver.type = "SCRIPTED"
    curve.driver.expression = "frame * 0.5 - 1"  # a simple expression: no Python needed
    obj.flame.neck_pose = (0.1, 0.3, 0.0)
    _select_only(obj)
    live = {}
    for frame in (1, 2, 3):
        scene.frame_set(frame)
        live[frame] = evaluated_vertices(obj)
    armature, mesh = rig_module.make_rig(bpy.context, obj, keep_live=True)
    curve.mute = True  # the live head stays as it was; the rig has its own keys
    for frame in (1, 2, 3):
        scene.frame_set(frame)
        assert np.abs(evaluated_vertices(mesh) - live[frame]).max() < 1e-5, frame
    assert np.abs(live[1] - live[3]).max() > 1e-4
