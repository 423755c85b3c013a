"""Landmark empties on a FLAME head: they sit exactly on the posed surface in every state."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

from conftest import evaluated_parameters  # noqa: E402

from flame_blender import blender as flame_blender_layer  # noqa: E402
from flame_blender import core  # noqa: E402
from flame_blender.blender import get_parameters, import_head, landmark_empties, set_parameters  # noqa: E402
from flame_blender.core import FlameNumpy, FlameParameters, load_flame, load_landmark_embeddings  # noqa: E402

TOLERANCE = 1e-5  # metres


def empty_world_positions(obj, landmark_set: str, depsgraph=None) -> np.ndarray:
    """World positions ``(L, 3)`` of the head's empties of one set, in landmark order."""
    depsgraph = depsgraph or bpy.context.evaluated_depsgraph_get()
    empties = landmark_empties.landmark_empties(obj, landmark_set)
    return np.array([e.evaluated_get(depsgraph).matrix_world.translation[:] for e in empties])



def expected_world(obj, vertices: np.ndarray, embedding, faces) -> np.ndarray:
    points = embedding.points(vertices, faces)
    matrix = np.array(obj.matrix_world)
    return points @ matrix[:3, :3].T + matrix[:3, 3]


def error_now(obj, flame_dir, flame_reference, names=("mediapipe", "static_68")) -> float:
    depsgraph = bpy.context.evaluated_depsgraph_get()
    vertices = flame_reference(evaluated_parameters(obj, depsgraph))
    embeddings = load_landmark_embeddings(flame_dir)
    faces = load_flame(flame_dir)["f"]
    errors = []
    for landmark_set, name in zip(("mediapipe", "ibug68"), names, strict=True):
        got = empty_world_positions(obj, landmark_set, depsgraph)
        want = expected_world(obj, vertices, embeddings[name], faces)
        assert got.shape == want.shape
        errors.append(np.abs(got - want).max())
    return float(max(errors))


def test_empties_follow_parameters_sliders_and_animation(small_head, flame_dir, flame_reference):
    obj = small_head
    obj.location = (0.3, -0.2, 0.1)  # world = matrix_world @ FLAME coordinates
    bpy.context.view_layer.update()
    created = landmark_empties.add_landmark_empties(obj, "mediapipe")
    created += landmark_empties.add_landmark_empties(obj, "ibug68")
    assert len(created) == 105 + 68
    first = bpy.data.objects[f"{obj.name} mediapipe 012"]
    assert first.parent == obj and first.parent_type == "OBJECT"
    assert first["flame_landmark_set"] == "mediapipe" and first["flame_landmark_index"] == 12
    assert first.empty_display_type == "SPHERE" and first.empty_display_size == pytest.approx(0.002)
    collection = bpy.data.collections[f"{obj.name} landmarks"]
    assert len(collection.objects) == 173 and collection.name in bpy.context.scene.collection.children
    assert error_now(obj, flame_dir, flame_reference) < TOLERANCE

    rng = np.random.default_rng(3)
    for _ in range(2):
        set_parameters(obj, FlameParameters.random(rng, 10, 5, pose_scale=1.0))
        bpy.context.view_layer.update()
        assert error_now(obj, flame_dir, flame_reference) < TOLERANCE
    obj.flame.jaw_pose[0] = 0.3  # a slider drag
    obj.data.shape_keys.key_blocks["expr_002"].value = -2.0  # the Shape Keys panel
    bpy.context.view_layer.update()
    assert error_now(obj, flame_dir, flame_reference) < TOLERANCE
    # The empties really moved with the surface (not left at the neutral head).
    neutral = expected_world(obj, flame_reference(FlameParameters.zeros(10, 5)),
                             load_landmark_embeddings(flame_dir)["mediapipe"], load_flame(flame_dir)["f"])
    assert np.abs(empty_world_positions(obj, "mediapipe") - neutral).max() > 1e-3

    obj.flame.jaw_pose = (0.0, 0.0, 0.0)
    obj.keyframe_insert("flame.jaw_pose", frame=1)
    obj.flame.jaw_pose = (0.4, 0.05, -0.1)
    obj.keyframe_insert("flame.jaw_pose", frame=11)
    for frame in (4, 11, 7):
        bpy.context.scene.frame_set(frame)
        assert error_now(obj, flame_dir, flame_reference) < TOLERANCE, frame
    assert get_parameters(obj).jaw_pose[0] != 0.0


def test_remove_and_replace(small_head):
    obj = small_head
    before = {o.name for o in bpy.data.objects}, len(bpy.data.collections)
    landmark_empties.add_landmark_empties(obj, "mediapipe")
    landmark_empties.add_landmark_empties(obj, "mediapipe")  # replaces, no duplicates
    landmark_empties.add_landmark_empties(obj, "ibug68")
    assert len(landmark_empties.landmark_empties(obj)) == 173
    assert landmark_empties.remove_landmark_empties(obj, "ibug68") == 68
    assert len(landmark_empties.landmark_empties(obj)) == 105
    bpy.context.view_layer.objects.active = obj
    assert bpy.ops.flame.remove_landmarks() == {"FINISHED"}
    assert ({o.name for o in bpy.data.objects}, len(bpy.data.collections)) == before
    assert bpy.ops.flame.add_landmarks(landmark_set="ibug68") == {"FINISHED"}
    assert len(landmark_empties.landmark_empties(obj, "ibug68")) == 68


def test_missing_embedding_is_an_error_with_nothing_created(blender_scene, flame_dir, tmp_path):
    folder = tmp_path / "flame"
    shutil.copytree(flame_dir, folder)
    (folder / "mediapipe_landmark_embedding.npz").unlink()
    for name in ("flame_static_embedding_68.pkl", "flame_dynamic_embedding.npy", "landmark_embedding.npy"):
        (folder / name).unlink()
    obj = import_head(bpy.context, folder, n_shape=4, n_expression=2)
    before = {o.name for o in bpy.data.objects}, len(bpy.data.collections)
    for landmark_set, file_name in (("mediapipe", "mediapipe_landmark_embedding.npz"), ("ibug68", "flame_static_embedding_68.pkl")):
        with pytest.raises(RuntimeError, match=f"FLAME landmarks not added.*{file_name}"):
            bpy.ops.flame.add_landmarks(landmark_set=landmark_set)
    assert ({o.name for o in bpy.data.objects}, len(bpy.data.collections)) == before
    assert landmark_empties.landmark_empties(obj) == []


def test_ibug68_is_one_definition_the_fixed_68_points(blender_scene, flame_dir, tmp_path):
    # Without flame_static_embedding_68.pkl, "iBUG 68" is DECA's fixed 68 points, for the
    # empties and for the batch renderer alike (the empties used to switch to the yaw-dependent
    # contour + static 51 while the batch took DECA's 68).
    from flame_blender.blender.render.batch import LANDMARK_SETS

    folder = tmp_path / "flame"
    shutil.copytree(flame_dir, folder)
    (folder / "flame_static_embedding_68.pkl").unlink()
    obj = import_head(bpy.context, folder, n_shape=4, n_expression=2)
    landmark_empties.add_landmark_empties(obj, "ibug68")
    reference = FlameNumpy(folder, n_shape=4, n_expression=2)
    deca_68 = core.load_deca_landmark_embedding(folder)["full_68"]
    faces = np.asarray(reference.faces)
    for yaw in (0.0, 0.5, -0.6):  # the dynamic contour would change with these
        obj.flame.global_pose = (0.1, yaw, 0.0)
        bpy.context.view_layer.update()
        matrix = np.array(obj.matrix_world)
        vertices = reference.run(**get_parameters(obj).forward_kwargs()).vertices
        want = np.einsum("lkc,lk->lc", vertices[faces[deca_68.face_indices]], deca_68.barycentric)
        got = empty_world_positions(obj, "ibug68")
        assert np.abs(got - (want @ matrix[:3, :3].T + matrix[:3, 3])).max() < TOLERANCE, yaw
    batch_choice = next(key for key in LANDMARK_SETS["ibug68"] if key in reference.landmarks.names)
    assert batch_choice == "full_68"


def test_deleting_empties_or_the_head_raises_nothing(small_head, flame_dir, flame_reference, capfd):
    obj = small_head
    landmark_empties.add_landmark_empties(obj, "mediapipe")
    landmark_empties.add_landmark_empties(obj, "ibug68")
    bpy.data.objects.remove(bpy.data.objects[f"{obj.name} mediapipe 000"])
    obj.flame.jaw_pose = (0.25, 0.0, 0.0)  # the update callback must not trip over the deleted one
    bpy.context.view_layer.update()
    assert len(landmark_empties.landmark_empties(obj, "mediapipe")) == 104
    depsgraph = bpy.context.evaluated_depsgraph_get()
    vertices = flame_reference(evaluated_parameters(obj, depsgraph))
    want = expected_world(obj, vertices, load_landmark_embeddings(flame_dir)["mediapipe"], load_flame(flame_dir)["f"])
    assert np.abs(empty_world_positions(obj, "mediapipe") - want[1:]).max() < TOLERANCE

    unparented = bpy.data.objects[f"{obj.name} mediapipe 001"]
    unparented.parent = None  # the user takes it off the head: it stays where it is
    kept = unparented.location.copy()
    obj.flame.jaw_pose = (0.1, 0.0, 0.0)
    obj.flame.jaw_pose = (0.3, 0.0, 0.0)
    assert unparented.location == kept
    assert len(landmark_empties.landmark_empties(obj, "mediapipe")) == 103

    obj.keyframe_insert("flame.jaw_pose", frame=1)
    obj.flame.jaw_pose = (0.0, 0.0, 0.0)
    obj.keyframe_insert("flame.jaw_pose", frame=5)
    name = obj.name

    def delete_head_and_an_empty(scene, depsgraph=None):
        for victim in (name, f"{name} ibug68 010"):
            found = bpy.data.objects.get(victim)
            if found is not None:
                bpy.data.objects.remove(found)

    bpy.app.handlers.frame_change_pre.insert(0, delete_head_and_an_empty)
    try:
        bpy.context.scene.frame_set(3)
        bpy.context.scene.frame_set(4)
    finally:
        bpy.app.handlers.frame_change_pre.remove(delete_head_and_an_empty)
    assert "Error" not in capfd.readouterr().err


def test_unregister_leaves_nothing(small_head):
    landmark_empties.add_landmark_empties(small_head, "mediapipe")
    try:
        flame_blender_layer.unregister()
        assert not hasattr(bpy.types, "FLAME_OT_add_landmarks")
        assert not hasattr(bpy.types, "FLAME_OT_remove_landmarks")
        assert landmark_empties._evaluators == {} and landmark_empties._index is None
    finally:
        flame_blender_layer.register()
    assert bpy.types.FLAME_OT_add_landmarks.is_registered


def test_empties_keep_following_after_saving_and_reopening(small_head, flame_dir, flame_reference, tmp_path):
    landmark_empties.add_landmark_empties(small_head, "mediapipe")
    landmark_empties.add_landmark_empties(small_head, "ibug68")
    path = tmp_path / "landmarks.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(path))
    bpy.ops.wm.open_mainfile(filepath=str(path))
    obj = bpy.data.objects["FLAME"]
    obj.flame.neck_pose = (0.2, -0.3, 0.1)
    bpy.context.view_layer.update()
    assert error_now(obj, flame_dir, flame_reference) < TOLERANCE


def test_undo_of_adding_and_of_posing(small_head, flame_dir, flame_reference):
    window = bpy.context.window_manager.windows[0]
    name = small_head.name
    with bpy.context.temp_override(window=window):
        bpy.ops.ed.undo_push(message="imported")
        bpy.context.view_layer.objects.active = bpy.data.objects[name]
        bpy.ops.flame.add_landmarks(landmark_set="mediapipe")
        bpy.ops.flame.add_landmarks(landmark_set="ibug68")
        obj = bpy.data.objects[name]
        obj.flame.jaw_pose = (0.3, 0.0, 0.0)
        bpy.context.view_layer.update()
        bpy.ops.ed.undo_push(message="posed")
        obj.flame.neck_pose = (0.0, 0.5, 0.2)
        bpy.context.view_layer.update()
        bpy.ops.ed.undo_push(message="posed more")
        bpy.ops.ed.undo()
        obj = bpy.data.objects[name]  # undo replaces the datablocks
        assert get_parameters(obj).neck_pose[1] == 0.0
        assert error_now(obj, flame_dir, flame_reference) < TOLERANCE
        obj.flame.eye_pose = (0.1, 0.2, 0.0, 0.1, 0.2, 0.0)
        bpy.context.view_layer.update()
        assert error_now(obj, flame_dir, flame_reference) < TOLERANCE
        bpy.ops.ed.undo()  # back before the empties (operators called from Python push no undo step)
        obj = bpy.data.objects[name]
        assert landmark_empties.landmark_empties(obj) == []
        assert not [o for o in bpy.data.objects if "flame_landmark_set" in o]
