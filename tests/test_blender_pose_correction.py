"""Playback writes the pose into the head's pose correction (a small mesh read by a Geometry
Nodes modifier), not into the pose shape key: the evaluated mesh must still equal FLAME's
forward pass (NumPy, float64) on every frame, through edits, save and reopen, files saved
before the correction existed, copies of the head, and with the modifier turned off."""

from __future__ import annotations

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

from conftest import evaluated_parameters  # noqa: E402

from flame_blender.blender import import_head, pose_correction  # noqa: E402
from flame_blender.blender.head import POSE_KEY  # noqa: E402

TOLERANCE = 1e-5  # metres


def _animate(obj, seed: int = 0) -> None:
    """Keys on pose and coefficient channels, as a tracked sequence has (bulk or not)."""
    rng = np.random.default_rng(seed)
    blocks = obj.data.shape_keys.key_blocks
    for frame in (1, 8, 15):
        obj.flame.jaw_pose = (abs(rng.normal()) * 0.3, 0.0, 0.0)
        obj.flame.neck_pose = tuple(rng.normal(size=3) * 0.2)
        obj.flame.global_pose = tuple(rng.normal(size=3) * 0.2)
        for path in ("flame.jaw_pose", "flame.neck_pose", "flame.global_pose"):
            obj.keyframe_insert(path, frame=frame)
        for name in ("shape_001", "expr_000", "expr_003"):
            blocks[name].value = float(rng.normal())
            blocks[name].keyframe_insert("value", frame=frame)



def _error(obj, flame_reference, evaluated_vertices) -> float:
    return float(np.abs(evaluated_vertices(obj) - flame_reference(evaluated_parameters(obj))).max())


def _points(block) -> np.ndarray:
    out = np.empty(3 * len(block.data), dtype=np.float32)
    block.data.foreach_get("co", out)
    return out


def _correction(obj) -> np.ndarray:
    """The correction's offsets and (where present) its per-vertex linear map, flattened."""
    mesh = pose_correction.correction_object(obj).data
    parts = []
    for name in ("position", *pose_correction.COLUMN_ATTRIBUTES):
        if name in mesh.attributes:
            out = np.empty(3 * len(mesh.vertices), dtype=np.float32)
            mesh.attributes[name].data.foreach_get("vector", out)
            parts.append(out)
    return np.concatenate(parts)


def _uses_linear_map(obj) -> bool:
    mesh = pose_correction.correction_object(obj).data
    return all(name in mesh.attributes for name in pose_correction.COLUMN_ATTRIBUTES) and bool(
        _correction(obj)[3 * len(mesh.vertices):].any()
    )


def test_playback_leaves_the_shape_keys_alone_and_stays_exact(small_head, flame_reference, evaluated_vertices):
    obj = small_head
    assert obj.modifiers[0].name == pose_correction.MODIFIER_NAME
    target = pose_correction.correction_object(obj)
    assert target is not None and len(target.data.vertices) == len(obj.data.vertices)
    assert target.name not in bpy.context.scene.objects  # linked to no collection
    _animate(obj)
    scene = bpy.context.scene
    scene.frame_set(1)
    pose_key = obj.data.shape_keys.key_blocks[POSE_KEY]
    before = _points(pose_key)
    for frame in (2, 5, 8, 11, 15, 3):
        scene.frame_set(frame)
        assert _error(obj, flame_reference, evaluated_vertices) < TOLERANCE, frame
    assert np.array_equal(_points(pose_key), before)  # playback never rewrote the pose key
    assert np.abs(_correction(obj)).max() > 1e-3  # the pose went into the correction...
    assert _uses_linear_map(obj)  # ...as the skinning of Blender's own shape-key mix
    # an edit writes the pose key again and zeroes the correction
    obj.flame.jaw_pose[0] = 0.31
    bpy.context.view_layer.update()
    assert _error(obj, flame_reference, evaluated_vertices) < TOLERANCE
    assert not np.array_equal(_points(pose_key), before)
    assert not _correction(obj).any()


def test_modifier_turned_off_plays_through_the_pose_key(small_head, flame_reference, evaluated_vertices):
    obj = small_head
    _animate(obj, seed=1)
    modifier = obj.modifiers[pose_correction.MODIFIER_NAME]
    for frame in (1, 4, 9):
        bpy.context.scene.frame_set(frame)
    assert np.abs(_correction(obj)).max() > 1e-3
    # turned off after playback: the pose that was in the correction goes into the pose key
    modifier.show_viewport = False
    bpy.context.view_layer.update()
    assert _error(obj, flame_reference, evaluated_vertices) < TOLERANCE
    assert not _correction(obj).any()
    for frame in (1, 4, 9, 14):
        bpy.context.scene.frame_set(frame)
        assert _error(obj, flame_reference, evaluated_vertices) < TOLERANCE, frame
    assert not _correction(obj).any()
    modifier.show_viewport = True  # and on again: nothing stale is added
    bpy.context.view_layer.update()
    assert _error(obj, flame_reference, evaluated_vertices) < TOLERANCE


def test_saved_mid_playback_and_an_old_file_reopen_exactly(blender_scene, flame_dir, flame_reference, evaluated_vertices, tmp_path):
    obj = import_head(blender_scene, flame_dir, n_shape=10, n_expression=5, name="FLAME")
    _animate(obj, seed=2)
    blender_scene.frame_set(6)
    assert np.abs(_correction(obj)).max() > 1e-3
    mid_playback = tmp_path / "mid.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(mid_playback))
    # a file as versions before the correction wrote it: no modifier, no correction object
    pose_correction.remove(obj)
    assert len(obj.modifiers) == 0
    assert not [o for o in bpy.data.objects if o.get(pose_correction.MARKER)]
    blender_scene.frame_set(7)
    old = tmp_path / "old.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(old))

    for path, frame in ((mid_playback, 6), (old, 7)):
        bpy.ops.wm.open_mainfile(filepath=str(path))
        obj = bpy.data.objects["FLAME"]
        assert bpy.context.scene.frame_current == frame
        assert _error(obj, flame_reference, evaluated_vertices) < TOLERANCE, path.name
        assert obj.modifiers[0].name == pose_correction.MODIFIER_NAME, path.name  # migrated
        pose_key = obj.data.shape_keys.key_blocks[POSE_KEY]
        before = _points(pose_key)
        for frame in (2, 9, 13):
            bpy.context.scene.frame_set(frame)
            assert _error(obj, flame_reference, evaluated_vertices) < TOLERANCE, (path.name, frame)
        assert np.array_equal(_points(pose_key), before), path.name


def test_saving_or_stopping_playback_moves_the_pose_into_the_pose_key(small_head, flame_reference, evaluated_vertices, tmp_path):
    """Exporters that skip modifiers, and older versions of the extension, see only the shape
    keys: a saved head (and one whose playback stopped) holds its pose there alone."""
    from flame_blender.blender import handlers

    obj = small_head
    _animate(obj, seed=4)
    bpy.context.scene.frame_set(9)
    assert np.abs(_correction(obj)).max() > 1e-3
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "saved.blend"))
    assert not _correction(obj).any()
    obj.modifiers[pose_correction.MODIFIER_NAME].show_viewport = False
    assert _error(obj, flame_reference, evaluated_vertices) < TOLERANCE  # the shape keys alone
    assert handlers.on_settle in bpy.app.handlers.animation_playback_post


def test_a_copied_head_gets_its_own_correction(small_head, flame_reference, evaluated_vertices):
    obj = small_head
    _animate(obj, seed=3)
    copy = obj.copy()  # Shift+D: the object and its mesh (with its shape keys) are copied
    copy.data = obj.data.copy()
    copy.animation_data.action = None  # the copy keeps only the shape-key animation...
    copy.flame.jaw_pose = (0.05, 0.0, 0.0)  # ...and its own pose
    bpy.context.scene.collection.objects.link(copy)
    assert pose_correction.correction_object(copy) == pose_correction.correction_object(obj)
    bpy.context.view_layer.update()
    assert pose_correction.correction_object(copy) != pose_correction.correction_object(obj)
    for frame in (2, 6, 12):
        bpy.context.scene.frame_set(frame)
        for head in (obj, copy):
            assert _error(head, flame_reference, evaluated_vertices) < TOLERANCE, (head.name, frame)


def test_the_native_rig_takes_no_correction_along(small_head):
    from flame_blender.blender.rig import make_rig

    obj = small_head
    _animate(obj, seed=4)
    bpy.context.view_layer.objects.active = obj
    _, mesh_obj = make_rig(bpy.context, obj, bake="FRAME_RANGE", keep_live=False, identity_as_shape_keys=True)
    assert pose_correction.MODIFIER_NAME not in mesh_obj.modifiers
    assert not [o for o in bpy.data.objects if o.get(pose_correction.MARKER)]  # removed with the head


def test_make_single_user_gives_a_linked_duplicate_its_own_correction(small_head, flame_reference, evaluated_vertices):
    from flame_blender.blender.diagnostics import make_single_user

    obj = small_head
    _animate(obj, seed=5)
    twin = obj.copy()  # Alt+D: the same mesh, so the same shape keys
    bpy.context.scene.collection.objects.link(twin)
    twin.animation_data.action = None
    twin.flame.neck_pose = (0.0, 0.2, 0.0)
    assert make_single_user(twin)
    assert pose_correction.correction_object(twin) != pose_correction.correction_object(obj)
    for frame in (3, 10):
        bpy.context.scene.frame_set(frame)
        for head in (obj, twin):
            assert _error(head, flame_reference, evaluated_vertices) < TOLERANCE, (head.name, frame)


def test_a_head_with_keys_of_its_own_plays_exactly(small_head, flame_reference, evaluated_vertices):
    """A shape key that is not FLAME's (a user's sculpt, like the eyelid keys of tracked
    sequences) is added after skinning, as outside playback: not rotated with the head."""
    obj = small_head
    _animate(obj, seed=6)
    sculpt = obj.shape_key_add(name="my sculpt", from_mix=False)
    count = len(sculpt.data)
    points = _points(sculpt).reshape(-1, 3)
    lift = np.zeros_like(points)
    lift[: count // 2, 1] = 0.004  # 4 mm up for half the vertices
    sculpt.data.foreach_set("co", (points + lift).reshape(-1))
    for frame, value in ((1, 0.0), (15, 1.0)):
        sculpt.value = value
        sculpt.keyframe_insert("value", frame=frame)
    delta = lift.astype(np.float64)  # (key - Basis), what Blender adds times the value
    for frame in (2, 5, 8, 11, 14):
        bpy.context.scene.frame_set(frame)
        key = obj.data.shape_keys.evaluated_get(bpy.context.evaluated_depsgraph_get())
        value = key.key_blocks["my sculpt"].value
        assert 0.0 < value < 1.0
        expected = flame_reference(evaluated_parameters(obj)) + value * delta
        assert np.abs(evaluated_vertices(obj) - expected).max() < TOLERANCE, frame
    assert not _uses_linear_map(obj)  # the pose went in as an offset


def test_a_correction_from_an_earlier_version_is_brought_up_to_date(small_head, flame_reference, evaluated_vertices):
    """Files saved before the linear map existed carry a node group that only adds an offset:
    a file load gives the head the current one, and playback stays exact."""
    from flame_blender.blender import handlers

    obj = small_head
    modifier = obj.modifiers[pose_correction.MODIFIER_NAME]
    modifier.node_group[pose_correction.MARKER] = 1  # as the earlier version marked its group
    old_group = modifier.node_group
    handlers.migrate_heads()
    assert modifier.node_group != old_group
    assert modifier.node_group[pose_correction.MARKER] == pose_correction.VERSION
    _animate(obj, seed=7)
    for frame in (3, 9, 14):
        bpy.context.scene.frame_set(frame)
        assert _error(obj, flame_reference, evaluated_vertices) < TOLERANCE, frame
    assert _uses_linear_map(obj)


def test_keys_edited_between_frames_play_exactly(small_head, flame_reference, evaluated_vertices):
    """Playback keeps what it read of the curves while their number stays the same; a key edited
    in between (as in the Graph Editor during playback) must still give exact frames."""
    from flame_blender.blender.head import _fcurves

    obj = small_head
    _animate(obj, seed=8)
    for id_data in (obj, obj.data.shape_keys):  # linear keys, as sequences are imported
        for curve in _fcurves(id_data):
            for point in curve.keyframe_points:
                point.interpolation = "LINEAR"
    scene = bpy.context.scene
    for frame in (2, 3, 4):
        scene.frame_set(frame)
    for id_data, path in ((obj.data.shape_keys, 'key_blocks["expr_003"].value'), (obj, "flame.jaw_pose")):
        curve = next(c for c in _fcurves(id_data) if c.data_path == path)
        for point in curve.keyframe_points:
            point.co[1] += 0.4
            point.handle_left[1] += 0.4
            point.handle_right[1] += 0.4
        curve.update()
    for frame in (5, 6, 9, 12):
        scene.frame_set(frame)
        assert _error(obj, flame_reference, evaluated_vertices) < TOLERANCE, frame
    assert _uses_linear_map(obj)  # after the one corrected frame, playback predicts again


def test_a_muted_pose_key_is_turned_back_on(small_head, flame_reference, evaluated_vertices):
    """Both the pose correction and the pose key assume Blender's mix holds the pose key."""
    obj = small_head
    obj.flame.jaw_pose = (0.2, 0.0, 0.0)
    bpy.context.view_layer.update()
    obj.data.shape_keys.key_blocks[POSE_KEY].mute = True
    bpy.context.view_layer.update()
    assert not obj.data.shape_keys.key_blocks[POSE_KEY].mute
    assert _error(obj, flame_reference, evaluated_vertices) < TOLERANCE
