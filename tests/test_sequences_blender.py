"""Tracked sequences in Blender (real bpy): bulk keyframes, exact playback, the tracked camera
(head vertices projected by Blender's own ``world_to_camera_view`` against the file's OpenCV
camera), the NeRSemble object transform, bad input leaving the scene unchanged, undo, export and
round trip. Files come from tests/sequence_writers.py (written the way each tracker writes them)."""

from __future__ import annotations

import numpy as np
import pytest
from sequence_writers import (
    random_sequence,
    rodrigues,
    write_flame_head_tracker,
    write_metrical_frames,
    write_nersemble,
    write_vhap,
    write_vhap_export,
)

bpy = pytest.importorskip("bpy")

from flame_blender.core import FlameParameters, load_sequence  # noqa: E402
from flame_blender.core.errors import FlameFileError, FlameParameterError  # noqa: E402

TOLERANCE = 1e-5


def small_values(count, seed=0):
    values = random_sequence(count, seed=seed)
    values["neck_pose"][:] = 0.0  # a constant-zero channel: it must get no keys
    return values


def import_file(path, **options):
    from flame_blender.blender.sequence_import import import_sequence

    return import_sequence(bpy.context, path, **options)


def params_at(sequence, index):
    return sequence.parameters(index).resized(300, 100)


def curves_of(id_data):
    from flame_blender.blender.head import _fcurves

    return {(c.data_path, c.array_index): c for c in _fcurves(id_data)}


def test_vhap_import_keys_in_bulk_and_plays_back_exactly(blender_scene, flame_dir, flame_reference, evaluated_vertices, tmp_path):
    values = small_values(4, seed=1)
    path = write_vhap(tmp_path / "tracked_flame_params.npz", values, ["00003", "00004", "00006", "00010"])
    result = import_file(path, target="NEW", start_frame=5, fps=25.0, flame_dir=str(flame_dir))
    obj, sequence = result.head, result.sequence
    assert (result.frame_start, result.frame_end) == (5, 12)  # ids 3..10: gaps kept
    assert blender_scene.render.fps == 25 and blender_scene.frame_end == 12
    key_curves, object_curves = curves_of(obj.data.shape_keys), curves_of(obj)
    assert ("flame.neck_pose", 0) not in object_curves and ("flame.jaw_pose", 0) in object_curves
    assert ('key_blocks["shape_000"].value', 0) not in key_curves  # fixed identity: set, not keyed
    jaw = object_curves[("flame.jaw_pose", 0)]
    assert [k.co[0] for k in jaw.keyframe_points] == [5, 6, 8, 12]
    assert {k.interpolation for k in jaw.keyframe_points} == {"LINEAR"}
    assert obj.flame_sequence.format == "VHAP" and obj.flame_sequence.frames == 4
    for index, frame in enumerate([5, 6, 8, 12]):
        blender_scene.frame_set(frame)
        error = np.abs(evaluated_vertices(obj) - flame_reference(params_at(sequence, index))).max()
        assert error < TOLERANCE, (frame, error)
    blender_scene.frame_set(7)  # between keys: linear in every channel
    expected = FlameParameters(**{
        name: 0.5 * (getattr(sequence, name)[1] + getattr(sequence, name)[2])
        for name in ("shape", "expression", "global_pose", "neck_pose", "jaw_pose", "eye_pose", "transl")
    }).resized(300, 100)
    assert np.abs(evaluated_vertices(obj) - flame_reference(expected)).max() < 1e-4


def project_with_blender(scene, camera, points_world):
    from bpy_extras.object_utils import world_to_camera_view
    from mathutils import Vector

    width, height = scene.render.resolution_x, scene.render.resolution_y
    out = []
    for point in points_world:
        ndc = world_to_camera_view(scene, camera, Vector(point))
        out.append((ndc.x * width, (1.0 - ndc.y) * height))
    return np.array(out)


def project_opencv(points, k, w2c):
    camera = points @ w2c[:3, :3].T + w2c[:3, 3]
    return np.stack([k[0, 0] * camera[:, 0] / camera[:, 2] + k[0, 2], k[1, 1] * camera[:, 1] / camera[:, 2] + k[1, 2]], 1)


def _metrical(tmp_path):
    count = 3
    values = small_values(count, seed=2)
    values["eyelids"] = np.random.default_rng(2).standard_normal((count, 2)).astype(np.float32)
    k = np.array([[1400.0, 0, 250.0], [0, 1400.0, 270.0], [0, 0, 1]])
    cameras = [(rodrigues(np.array([0.05 * i, np.pi + 0.2, 0.0])), np.array([0.01, -0.02, 1.0 + 0.1 * i]), k) for i in range(count)]
    return write_metrical_frames(tmp_path / "checkpoint", values, cameras, [0, 1, 2])


def _fht(tmp_path):
    values = small_values(3, seed=3)
    cams = np.array([[0.2, -0.1, 0.05, 0.01, -0.02, 1.0], [-0.3, 0.2, 0.1, 0.0, 0.01, 0.9], [0.0, 0.0, 0.3, 0.0, 0.0, 1.1]])
    return write_flame_head_tracker(tmp_path / "fht", values, cams, focal=700.0, size=256, frame_ids=[0, 1, 2])


def _vhap_export(tmp_path):
    values = small_values(3, seed=4)
    c2w = []
    for i in range(3):
        matrix = np.eye(4)
        matrix[:3, :3] = rodrigues(np.array([0.1, 0.3 * i - 0.3, 0.0]))
        matrix[:3, 3] = matrix[:3, :3] @ np.array([0.0, 0.0, 0.8]) + values["translation"][i]
        c2w.append(matrix)
    return write_vhap_export(tmp_path / "export", values, c2w, (1100.0, 1100.0, 260.0, 250.0, 512, 500), np.zeros((1, 5143, 3)))


@pytest.mark.parametrize("make", [_metrical, _fht, _vhap_export], ids=["metrical", "flame_head_tracker", "vhap_export"])
def test_tracked_camera_sees_the_head_as_the_file_camera(blender_scene, flame_dir, evaluated_vertices, tmp_path, make):
    path = make(tmp_path)
    result = import_file(path, target="NEW", flame_dir=str(flame_dir))
    obj, camera, cameras = result.head, result.camera, result.sequence.cameras
    assert camera is not None and blender_scene.camera == camera
    for index in range(len(result.sequence)):
        blender_scene.frame_set(result.frame_start + index)
        local = evaluated_vertices(obj)[::97]  # FLAME space: the head's object space
        world = local @ np.array(obj.matrix_world)[:3, :3].T + np.array(obj.matrix_world)[:3, 3]
        got = project_with_blender(blender_scene, camera, world)
        expected = project_opencv(local, cameras.intrinsics[index], cameras.world_to_camera[index])
        assert np.abs(got - expected).max() < 0.01, (index, np.abs(got - expected).max())


def test_metrical_eyelids_are_keyed_on_the_head(blender_scene, flame_dir, tmp_path):
    result = import_file(_metrical(tmp_path), target="NEW", flame_dir=str(flame_dir))
    curve = curves_of(result.head)[('["l_eyelid"]', 0)]
    np.testing.assert_allclose([k.co[1] for k in curve.keyframe_points], result.sequence.extra_params[:, 0], atol=1e-6)
    assert any("eyelid" in note for note in result.notes)


def _eyelid_model(flame_dir, tmp_path):
    """A copy of the synthetic model folder with metrical-tracker's eyelid blend shapes beside it."""
    import shutil

    folder = tmp_path / "flame_eyelids"
    shutil.copytree(flame_dir, folder)
    rng = np.random.default_rng(7)
    for name in ("l_eyelid", "r_eyelid"):
        np.save(folder / f"{name}.npy", (3e-3 * rng.standard_normal((5023, 3))).astype(np.float32))
    return folder


def test_metrical_eyelids_move_the_mesh_exactly(blender_scene, flame_dir, evaluated_vertices, tmp_path):
    from flame_blender.core import FlameNumpy

    folder = _eyelid_model(flame_dir, tmp_path)
    result = import_file(_metrical(tmp_path), target="NEW", flame_dir=str(folder))
    obj, sequence = result.head, result.sequence
    blocks = obj.data.shape_keys.key_blocks
    assert "l_eyelid" in blocks and "r_eyelid" in blocks and obj.get("l_eyelid") is None
    assert not any("eyelid" in note for note in result.notes)
    curve = curves_of(obj.data.shape_keys)[('key_blocks["r_eyelid"].value', 0)]
    np.testing.assert_allclose([k.co[1] for k in curve.keyframe_points], sequence.extra_params[:, 1], atol=1e-6)
    # the reference: metrical-tracker adds the eyelids after skinning, before the translation
    reference = FlameNumpy(folder, n_shape=300, n_expression=100)
    assert reference.extra_names == ["l_eyelid", "r_eyelid"]
    without = FlameNumpy(flame_dir, n_shape=300, n_expression=100)
    for index in range(len(sequence)):
        blender_scene.frame_set(result.frame_start + index)
        params = params_at(sequence, index).forward_kwargs()
        expected = reference(**params, extra_params=sequence.extra_params[index])
        got = evaluated_vertices(obj)
        assert np.abs(got - expected).max() < TOLERANCE, (index, np.abs(got - expected).max())
        assert np.abs(got - without(**params)).max() > 1e-3  # the eyelids do move it
    vertices = _exported_vertices(obj, blender_scene, tmp_path)
    for index in range(len(sequence)):
        expected = reference(**params_at(sequence, index).forward_kwargs(), extra_params=sequence.extra_params[index])
        assert np.abs(vertices[index] - expected).max() < TOLERANCE, index
    # onto the same head: a VHAP sequence with offsets, then one without; no eyelids left over
    static = 4e-3 * np.random.default_rng(3).standard_normal((1, 5023, 3)).astype(np.float32)
    for name, offsets in (("with.npz", static), ("without.npz", None)):
        path = write_vhap(tmp_path / name, small_values(2, seed=6), ["0", "1"], static_offset=offsets)
        again = import_file(path, target="ACTIVE")
        assert ("flame_offsets" in blocks) == (offsets is not None)
        blender_scene.frame_set(again.frame_start + 1)
        params = params_at(again.sequence, 1).forward_kwargs()
        expected = without(**params, offsets=None if offsets is None else offsets[0])
        assert np.abs(evaluated_vertices(obj) - expected).max() < TOLERANCE, name


def test_vhap_static_offsets_play_back_exactly(blender_scene, flame_dir, evaluated_vertices, tmp_path):
    from flame_blender.core import FlameNumpy

    values = small_values(3, seed=8)
    static = 4e-3 * np.random.default_rng(8).standard_normal((1, 5023, 3))
    path = write_vhap(tmp_path / "tracked_flame_params.npz", values, ["0", "1", "2"], static_offset=static,
                      dynamic_offset=np.zeros((3, 5023, 3)))  # VHAP writes zeros when it tracks none
    result = import_file(path, target="NEW", flame_dir=str(flame_dir))
    obj, sequence = result.head, result.sequence
    assert "flame_offsets" in obj.data.shape_keys.key_blocks and not result.notes
    reference = FlameNumpy(flame_dir, n_shape=300, n_expression=100)
    offsets = static[0].astype(np.float32)  # as the file holds them
    for index in [0, 2, 1]:
        blender_scene.frame_set(result.frame_start + index)
        params = params_at(sequence, index).forward_kwargs()
        got = evaluated_vertices(obj)
        error = np.abs(got - reference(**params, offsets=offsets)).max()
        assert error < TOLERANCE, (index, error)
        # offsets enter before the joints: adding them after skinning would be far off
        assert np.abs(got - (reference(**params) + offsets)).max() > 1e-4
    vertices = _exported_vertices(obj, blender_scene, tmp_path)
    for index in range(3):
        expected = reference(**params_at(sequence, index).forward_kwargs(), offsets=offsets)
        assert np.abs(vertices[index] - expected).max() < TOLERANCE, index
    from flame_blender.blender.sequence_export import export_sequence

    written, _ = export_sequence(obj, blender_scene, tmp_path / "again.npz", "VHAP")
    np.testing.assert_allclose(load_sequence(written).static_offset, offsets, atol=1e-7)


def _exported_vertices(obj, scene, tmp_path):
    from flame_blender.blender.sequence_export import export_sequence

    written, _ = export_sequence(obj, scene, tmp_path / "vertices.npz", "NPZ_VERTICES")
    with np.load(written) as archive:
        return archive["vertices"]


def test_dynamic_offsets_are_refused_with_the_scene_unchanged(blender_scene, flame_dir, tmp_path):
    values = small_values(2, seed=9)
    dynamic = np.zeros((2, 5023, 3))
    dynamic[1, 10] = 1e-3
    path = write_vhap(tmp_path / "tracked_flame_params.npz", values, ["0", "1"], dynamic_offset=dynamic)
    before = _scene_state()
    with pytest.raises(FlameFileError, match="dynamic_offset"):
        import_file(path, target="NEW", flame_dir=str(flame_dir))
    assert _scene_state() == before


def test_nersemble_transform_becomes_the_object_motion(blender_scene, flame_dir, flame_reference, evaluated_vertices, tmp_path):
    values = small_values(2, seed=5)
    euler = np.array([[0.1, -0.4, 0.2], [0.5, 0.3, -0.2]])
    result = import_file(write_nersemble(tmp_path / "tracking.npz", values, euler, 1.2, np.array([0, 1])), target="NEW",
                         flame_dir=str(flame_dir))
    obj, sequence = result.head, result.sequence
    for index in range(2):
        blender_scene.frame_set(result.frame_start + index)
        world_now = np.array(obj.matrix_world)
        local = evaluated_vertices(obj)
        np.testing.assert_allclose(local, flame_reference(params_at(sequence, index)), atol=TOLERANCE)
        rotation = rodrigues(np.array([np.pi / 2, 0, 0]))  # the head's rest rotation
        flame_world = local @ sequence.object_transform[index, :3, :3].T + sequence.object_transform[index, :3, 3]
        expected = flame_world @ rotation.T
        got = local @ world_now[:3, :3].T + world_now[:3, 3]
        assert np.abs(got - expected).max() < TOLERANCE


def _scene_state():
    return (sorted(o.name for o in bpy.data.objects), sorted(a.name for a in bpy.data.actions), len(bpy.data.cameras),
            len(bpy.data.meshes))


def test_bad_input_leaves_the_scene_unchanged(small_head, flame_dir, tmp_path):
    values = small_values(3, seed=6)
    nan = dict(values)
    nan["expr"] = values["expr"].copy()
    nan["expr"][2, 0] = np.nan
    bad_offsets = write_vhap(tmp_path / "offsets.npz", values, ["0", "1", "2"], np.zeros((1, 4000, 3)))
    cases = [
        (write_vhap(tmp_path / "nan.npz", nan, ["0", "1", "2"]), "NEW", FlameFileError),
        (write_vhap(tmp_path / "ok.npz", values, ["0", "1", "2"]), "ACTIVE", FlameParameterError),  # 300 > 10 components
        (bad_offsets, "NEW", FlameFileError),
    ]
    unknown = tmp_path / "unknown.npz"
    np.savez(unknown, foo=np.zeros(3))
    cases.append((unknown, "ACTIVE", FlameFileError))
    before = _scene_state()
    for path, target, error in cases:
        bpy.context.view_layer.objects.active = small_head
        with pytest.raises(error):
            import_file(path, target=target, flame_dir=str(flame_dir))
        assert _scene_state() == before, path
    with pytest.raises(RuntimeError, match="unknown layout"):  # the operator's error report
        bpy.ops.flame.import_sequence(filepath=str(unknown))
    assert _scene_state() == before
    import pickle
    import zipfile

    class System:
        def __reduce__(self):
            import os

            return (os.system, ("echo pwned > /dev/null",))

    hostile = tmp_path / "00000.frame"
    with zipfile.ZipFile(hostile, "w") as archive:
        archive.writestr("00000/data.pkl", pickle.dumps({"flame": System()}, protocol=2))
    with pytest.raises(RuntimeError, match="refuses global"):
        bpy.ops.flame.import_sequence(filepath=str(hostile), target="NEW")
    assert _scene_state() == before


def test_operator_key_mapping(small_head, tmp_path):
    path = tmp_path / "other.npz"
    jaw = np.array([[0.2, 0.0, 0.0], [0.3, 0.0, 0.0]])
    np.savez(path, exp_coeffs=np.full((2, 5), 0.5), jaw=np.stack([rodrigues(r) for r in jaw]))
    bpy.context.view_layer.objects.active = small_head
    assert bpy.ops.flame.import_sequence(filepath=str(path), key_map='{"expression": "exp_coeffs", "jaw_pose": "jaw"}',
                                         rotation="MATRIX") == {"FINISHED"}
    curve = curves_of(small_head)[("flame.jaw_pose", 0)]
    np.testing.assert_allclose([k.co[1] for k in curve.keyframe_points], [0.2, 0.3], atol=1e-6)
    assert small_head.data.shape_keys.key_blocks["expr_004"].value == 0.5  # constant: set, not keyed


def test_operator_reports_the_format_and_undo_restores_the_animation(small_head, tmp_path):
    values = random_sequence(3, n_shape=10, n_expression=5, seed=7)
    path = write_vhap(tmp_path / "tracked_flame_params.npz", values, ["0", "1", "2"])
    name = small_head.name
    window = bpy.context.window_manager.windows[0]
    with bpy.context.temp_override(window=window):
        small_head.flame.jaw_pose = (0.1, 0.0, 0.0)
        small_head.keyframe_insert('flame.jaw_pose', index=0, frame=1)
        bpy.ops.ed.undo_push(message="before")
        bpy.context.view_layer.objects.active = small_head
        assert bpy.ops.flame.import_sequence(filepath=str(path)) == {"FINISHED"}
        obj = bpy.data.objects[name]
        assert obj.flame_sequence.format == "VHAP"
        assert len(curves_of(obj)[("flame.jaw_pose", 0)].keyframe_points) == 3
        bpy.ops.ed.undo_push(message="imported")
        bpy.ops.ed.undo()
        obj = bpy.data.objects[name]
        curves = curves_of(obj)
        assert len(curves[("flame.jaw_pose", 0)].keyframe_points) == 1 and obj.flame_sequence.frames == 0


@pytest.mark.parametrize("fmt", ["VHAP", "JSONL"])
def test_import_export_import_is_exact(blender_scene, flame_dir, tmp_path, fmt):
    from flame_blender.blender.sequence_export import export_sequence

    values = small_values(5, seed=8)
    path = write_vhap(tmp_path / "tracked_flame_params.npz", values, ["10", "11", "13", "14", "20"])
    result = import_file(path, target="NEW", flame_dir=str(flame_dir), fps=30.0)
    out = tmp_path / ("again.npz" if fmt == "VHAP" else "again.jsonl")
    written, count = export_sequence(result.head, blender_scene, out, fmt)
    assert count == 5
    again, first = load_sequence(written), result.sequence
    for key in ("shape", "expression", "global_pose", "neck_pose", "jaw_pose", "eye_pose", "transl", "frame_ids"):
        np.testing.assert_array_equal(getattr(again, key), getattr(first, key), err_msg=key)


def test_export_vertices_match_the_forward_pass(blender_scene, flame_dir, flame_reference, tmp_path):
    values = small_values(3, seed=9)
    result = import_file(write_vhap(tmp_path / "tracked_flame_params.npz", values, ["0", "1", "2"]), target="NEW",
                         flame_dir=str(flame_dir))
    assert bpy.ops.flame.export_sequence(filepath=str(tmp_path / "vertices.npz"), format="NPZ_VERTICES") == {"FINISHED"}
    with np.load(tmp_path / "vertices.npz") as archive:
        vertices = archive["vertices"]
        assert vertices.dtype == np.float32 and vertices.shape == (3, 5023, 3)
        assert archive["frame_ids"].tolist() == [0, 1, 2]
        assert any(key.startswith("landmarks_") for key in archive.files)
    for index in range(3):
        assert np.abs(vertices[index] - flame_reference(params_at(result.sequence, index))).max() < TOLERANCE


def test_source_frames_become_the_camera_background(blender_scene, flame_dir, tmp_path):
    from flame_blender.core.render.png import write_png

    values = small_values(3, seed=12)
    k = np.array([[1400.0, 0, 256.0], [0, 1400.0, 256.0], [0, 0, 1]])
    cameras = [(rodrigues(np.array([0.0, np.pi, 0.0])), np.array([0.0, 0.0, 1.0]), k)] * 3
    folder = write_metrical_frames(tmp_path / "checkpoint", {**values, "eyelids": np.zeros((3, 2), np.float32)},
                                   cameras, [4, 5, 7])
    frames_dir = tmp_path / "frames"
    frames_dir.mkdir()
    for fid in (4, 5, 6, 7):
        write_png(frames_dir / f"frame_{fid:05d}.png", np.full((4, 4, 3), fid, np.uint8))
    before = _scene_state()
    with pytest.raises(FlameFileError, match="frame id"):
        import_file(folder, target="NEW", flame_dir=str(flame_dir), frames_dir=str(tmp_path))
    assert _scene_state() == before
    result = import_file(folder, target="NEW", flame_dir=str(flame_dir), frames_dir=str(frames_dir), start_frame=1)
    background = result.camera.data.background_images[0]
    assert result.camera.data.show_background_images
    for frame, fid in ((1, 4), (2, 5), (4, 7)):
        blender_scene.frame_set(frame)
        assert background.image_user.frame_current == fid
        assert background.image.filepath_from_user(image_user=background.image_user).endswith(f"frame_{fid:05d}.png")


def _hostile_sequence_cases():
    from hostile_sequence_files import HOSTILE_SEQUENCE

    return [(group, name) for group, builders in HOSTILE_SEQUENCE.items() for name in builders
            if name in ("torch_storage_numel_bomb", "frame_numpy_array_with_hidden_object_field",
                        "torch_stride_zero_tensor_bomb", "vhap_npz_pickled_member",
                        "torch_build_on_storage_type")]  # fmt: skip


@pytest.mark.parametrize("group, name", _hostile_sequence_cases())
def test_hostile_sequence_files_leave_the_scene_unchanged(blender_scene, tmp_path, group, name):
    """File > Import > FLAME Sequence on a hostile torch zip or npz: an error, nothing added."""
    from hostile_sequence_files import HOSTILE_SEQUENCE

    _reader, file_name, data = HOSTILE_SEQUENCE[group][name](tmp_path)
    path = tmp_path / file_name
    path.write_bytes(data)
    before = _scene_state()
    with pytest.raises(RuntimeError) as error:
        bpy.ops.flame.import_sequence(filepath=str(path), target="NEW")
    assert file_name in str(error.value)
    assert _scene_state() == before
    bpy.ops.mesh.primitive_cube_add()  # Blender goes on working
    assert len(bpy.data.objects) == len(before[0]) + 1
