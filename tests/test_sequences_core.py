"""Tracked sequences in core: each format written as its writer writes it (tests/sequence_writers.py),
read back by ``load_sequence`` with AUTO detection, compared with the values and the geometry the
writer put in (poses by the textbook Rodrigues formula, cameras by the writer's own projection)."""

from __future__ import annotations

import json
import pickle
import zipfile

import numpy as np
import pytest
from file_errors import assert_file_error
from sequence_writers import (
    axis_rotation,
    fht_euler_to_matrix,
    fht_project,
    random_sequence,
    rodrigues,
    write_emoca,
    write_flame_head_tracker,
    write_gaussian_avatars,
    write_metrical_frames,
    write_nersemble,
    write_vhap,
    write_vhap_export,
)

from flame_blender.core import load_sequence
from flame_blender.core.errors import FlameFileError, UnsafePickleError
from flame_blender.core.sequences import detect_format, save_sequence


def project_opencv(points: np.ndarray, k: np.ndarray, world_to_camera: np.ndarray) -> np.ndarray:
    camera = points @ world_to_camera[:3, :3].T + world_to_camera[:3, 3]
    return np.stack([k[0, 0] * camera[:, 0] / camera[:, 2] + k[0, 2], k[1, 1] * camera[:, 1] / camera[:, 2] + k[1, 2]], 1)


def same_rotation(axis_angle: np.ndarray, expected: np.ndarray, atol: float = 1e-6) -> None:
    for got, want in zip(axis_angle.reshape(-1, 3), expected.reshape(-1, 3), strict=True):
        np.testing.assert_allclose(rodrigues(got), rodrigues(want.astype(np.float64)), atol=atol)


def test_vhap_npz_frames_in_id_order_with_gaps_and_offsets(tmp_path):
    values = random_sequence(4)
    static = np.random.default_rng(1).standard_normal((1, 5143, 3)) * 1e-3
    dynamic = np.random.default_rng(2).standard_normal((4, 5143, 3)) * 1e-3
    ids = ["00010", "00002", "00003", "00007"]  # written out of order, with gaps
    path = write_vhap(tmp_path / "tracked_flame_params_30.npz", values, ids, static, dynamic)
    assert detect_format(path) == "VHAP"
    sequence = load_sequence(path)
    order = np.argsort([10, 2, 3, 7])
    assert sequence.format == "VHAP" and sequence.frame_ids.tolist() == [2, 3, 7, 10]
    np.testing.assert_array_equal(sequence.expression, values["expr"][order].astype(np.float64))
    np.testing.assert_array_equal(sequence.global_pose, values["rotation"][order])
    np.testing.assert_array_equal(sequence.eye_pose, values["eyes_pose"][order])
    np.testing.assert_array_equal(sequence.transl, values["translation"][order])
    np.testing.assert_array_equal(sequence.shape[3], values["shape"])
    assert sequence.fixed_shape and sequence.n_vertices == 5143
    np.testing.assert_allclose(sequence.offsets(0), static[0] + dynamic[order[0]], atol=1e-7)


def test_gaussian_avatars_flame_param(tmp_path):
    values = random_sequence(3, seed=3)
    path = write_gaussian_avatars(tmp_path / "flame_param.npz", values, np.zeros((1, 5143, 3)))
    sequence = load_sequence(path)
    assert sequence.format == "GAUSSIAN_AVATARS" and sequence.frame_ids.tolist() == [0, 1, 2]
    np.testing.assert_array_equal(sequence.jaw_pose, values["jaw_pose"])
    assert sequence.static_offset.shape == (5143, 3)


def test_nersemble_transform_outside_skinning_matches_the_writer(tmp_path):
    values = random_sequence(3, seed=4)
    euler = np.array([[0.1, -0.4, 0.2], [0.5, 0.3, -0.2], [-0.3, 0.1, 0.9]])
    path = write_nersemble(tmp_path / "tracking.npz", values, euler, 1.3, np.array([5, 6, 8]))
    sequence = load_sequence(path)
    assert sequence.format == "NERSEMBLE" and sequence.frame_ids.tolist() == [5, 6, 8]
    assert np.all(sequence.global_pose == 0) and np.all(sequence.transl == 0)
    points = np.random.default_rng(0).standard_normal((10, 3)) * 0.1
    for i in range(3):  # FlameProvider: v @ (Pose.from_euler(rot, t, 'XYZ') with R *= scale).T
        rotation = axis_rotation("x", euler[i, 0]) @ axis_rotation("y", euler[i, 1]) @ axis_rotation("z", euler[i, 2])
        expected = 1.3 * points @ rotation.T + values["translation"][i]
        got = points @ sequence.object_transform[i, :3, :3].T + sequence.object_transform[i, :3, 3]
        np.testing.assert_allclose(got, expected, atol=1e-6)


def test_metrical_tracker_frames_read_without_torch(tmp_path):
    count = 3
    values = random_sequence(count, seed=5)
    values["eyelids"] = np.random.default_rng(5).standard_normal((count, 2)).astype(np.float32)
    k = np.array([[1500.0, 0, 250.0], [0, 1500.0, 262.0], [0, 0, 1]])
    cameras = [(rodrigues(np.array([0.1 * i, 0.2, 0.0])), np.array([0.01, -0.02, 0.9 + 0.1 * i]), k) for i in range(count)]
    folder = write_metrical_frames(tmp_path / "checkpoint", values, cameras, [0, 1, 4])
    script = (
        "import sys, builtins\n"
        "real = builtins.__import__\n"
        "def guard(name, *a, **k):\n"
        "    if name == 'torch' or name.startswith('torch.'): raise ImportError('torch blocked')\n"
        "    return real(name, *a, **k)\n"
        "builtins.__import__ = guard\n"
        "from flame_blender.core import load_sequence\n"
        f"s = load_sequence({str(tmp_path)!r})\n"
        "assert 'torch' not in sys.modules\n"
        "print(s.format, s.frame_ids.tolist())\n"
    )
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=str(_root()))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["METRICAL_TRACKER", "[0,", "1,", "4]"]

    sequence = load_sequence(folder)
    assert sequence.extra_names == ("l_eyelid", "r_eyelid")
    np.testing.assert_array_equal(sequence.extra_params, values["eyelids"])
    same_rotation(sequence.jaw_pose, values["jaw_pose"])
    same_rotation(sequence.eye_pose, values["eyes_pose"])
    assert np.all(sequence.global_pose == 0) and np.all(sequence.transl == 0)
    points = np.random.default_rng(1).standard_normal((20, 3)) * 0.1
    for i, (rotation, translation, kk) in enumerate(cameras):
        expected = project_opencv(points, kk, np.block([[rotation, translation[:, None]], [np.zeros((1, 3)), 1]]))
        got = project_opencv(points, sequence.cameras.intrinsics[i], sequence.cameras.world_to_camera[i])
        np.testing.assert_allclose(got, expected, atol=0.01)
    np.testing.assert_array_equal(sequence.cameras.image_size[0], [512, 512])


def _root():
    from pathlib import Path

    return Path(__file__).resolve().parent.parent


def test_flame_head_tracker_camera_projects_like_the_tracker(tmp_path):
    count = 3
    values = random_sequence(count, seed=6)
    cams = np.array([[0.2, -0.1, 0.05, 0.01, -0.02, 1.0], [-0.3, 0.2, 0.1, 0.0, 0.01, 0.9], [0.0, 0.0, 0.3, 0.0, 0.0, 1.1]])
    folder = write_flame_head_tracker(tmp_path / "fht", values, cams, focal=700.0, size=256, frame_ids=[3, 1, 2])
    sequence = load_sequence(folder)
    assert sequence.format == "FLAME_HEAD_TRACKER" and sequence.frame_ids.tolist() == [1, 2, 3]
    points = np.random.default_rng(2).standard_normal((30, 3)) * 0.08
    k = np.array([[700.0, 0, 128], [0, 700.0, 128], [0, 0, 1]])
    for position, fid in enumerate([1, 2, 3]):
        cam = cams[[3, 1, 2].index(fid)].astype(np.float32).astype(np.float64)
        expected = fht_project(points, cam, k, 256)
        got = project_opencv(points, sequence.cameras.intrinsics[position], sequence.cameras.world_to_camera[position])
        np.testing.assert_allclose(got, expected, atol=0.01)
    np.testing.assert_array_equal(sequence.cameras.image_size[0], [256, 256])
    assert np.allclose(fht_euler_to_matrix(0, 0, 0), np.eye(3))


def test_vhap_export_cameras_match_the_nerf_convention(tmp_path):
    count = 3
    values = random_sequence(count, seed=7)
    c2w = []
    for i in range(count):
        matrix = np.eye(4)
        matrix[:3, :3] = rodrigues(np.array([0.0, 0.3 * i, 0.1]))
        matrix[:3, 3] = matrix[:3, :3] @ np.array([0.0, 0.0, 1.0])  # looks at the origin (OpenGL -z)
        c2w.append(matrix)
    folder = write_vhap_export(tmp_path / "export", values, c2w, (1200.0, 1210.0, 400.0, 390.0, 802, 800), np.zeros((1, 5143, 3)))
    sequence = load_sequence(folder)
    assert sequence.format == "VHAP_EXPORT" and len(sequence) == count
    np.testing.assert_array_equal(sequence.expression, values["expr"])
    points = np.random.default_rng(3).standard_normal((20, 3)) * 0.08
    k = np.array([[1200.0, 0, 400.0], [0, 1210.0, 390.0], [0, 0, 1]])
    for i in range(count):
        # GaussianAvatars' reader: c2w[:3, 1:3] *= -1 (OpenGL -> OpenCV), w2c = inv(c2w)
        opencv = c2w[i].copy()
        opencv[:3, 1:3] *= -1
        expected = project_opencv(points, k, np.linalg.inv(opencv))
        got = project_opencv(points, sequence.cameras.intrinsics[i], sequence.cameras.world_to_camera[i])
        np.testing.assert_allclose(got, expected, atol=1e-6)
    np.testing.assert_array_equal(sequence.cameras.image_size[0], [802, 800])


def test_video_head_tracker_camera_reproduces_the_opencv_calibration(tmp_path):
    """vht tracking.py: an OpenCV pose (r, t) becomes the model's rotation = flip_xy * r and
    translation with x, y negated; K is stored normalised (f / max(h, w), cx / w, cy / h)."""
    count = 2
    values = random_sequence(count, seed=8)
    flip = rodrigues(np.array([0.0, 0.0, np.pi]))
    r_cv = [np.array([0.1, 0.2, -0.1]), np.array([-0.2, 0.1, 0.05])]
    t_cv = [np.array([0.01, 0.02, 0.8]), np.array([-0.01, 0.0, 0.9])]
    from flame_blender.core.model.rotation import matrix_to_axis_angle

    for i in range(count):
        values["rotation"][i] = matrix_to_axis_angle(flip @ rodrigues(r_cv[i]))
        values["translation"][i] = t_cv[i] * [-1, -1, 1]
    h, w = 480, 640
    np.savez(
        tmp_path / "tracked_flame_params.npz", rotation=values["rotation"], translation=values["translation"],
        neck_pose=values["neck_pose"], jaw_pose=values["jaw_pose"], eyes_pose=values["eyes_pose"],
        shape=values["shape"], expr=values["expr"], texture=np.zeros((1, 50), np.float32),
        frame=np.array([0, 1]), view=np.array([0, 0]), light=np.zeros((count, 9, 3), np.float32),
        n_processed=2, K=np.array([1000.0 / 640, 330.0 / 640, 250.0 / 480], np.float32),
        RT=np.eye(3, 4, dtype=np.float32), image_size=np.array([h, w]),
    )
    sequence = load_sequence(tmp_path / "tracked_flame_params.npz")
    assert sequence.format == "VIDEO_HEAD_TRACKER"
    points = np.random.default_rng(4).standard_normal((10, 3)) * 0.1
    k = np.array([[1000.0, 0, 330.0], [0, 1000.0, 250.0], [0, 0, 1]])
    for i in range(count):
        expected = project_opencv(points, k, np.block([[rodrigues(r_cv[i]), t_cv[i][:, None]], [np.zeros((1, 3)), 1]]))
        model = points @ rodrigues(sequence.global_pose[i]).T + sequence.transl[i]
        got = project_opencv(model, sequence.cameras.intrinsics[i], sequence.cameras.world_to_camera[i])
        np.testing.assert_allclose(got, expected, atol=0.01)


def test_emoca_deca_smirk_mica_codes_are_zero_padded_later(tmp_path):
    codes = write_emoca(tmp_path / "emoca", 3)
    sequence = load_sequence(tmp_path / "emoca")
    assert sequence.format == "EMOCA" and sequence.frame_ids.tolist() == [0, 2, 4]
    np.testing.assert_array_equal(sequence.global_pose, codes["pose"][:, :3].astype(np.float32))
    np.testing.assert_array_equal(sequence.jaw_pose, codes["pose"][:, 3:].astype(np.float32))
    assert sequence.n_shape == 100 and sequence.n_expression == 50

    import torch

    deca = {"shape": torch.randn(2, 100), "tex": torch.randn(2, 50), "exp": torch.randn(2, 50),
            "pose": torch.randn(2, 6) * 0.1, "cam": torch.randn(2, 3), "light": torch.randn(2, 9, 3)}
    torch.save(deca, tmp_path / "codes.pt")
    sequence = load_sequence(tmp_path / "codes.pt")
    assert sequence.format == "DECA" and len(sequence) == 2
    np.testing.assert_array_equal(sequence.expression, deca["exp"].numpy())
    np.testing.assert_array_equal(sequence.jaw_pose, deca["pose"][:, 3:].numpy())

    smirk = {"pose_params": [[0.1, 0.0, 0.0]], "cam": [[1.0, 0.0, 0.0]], "shape_params": [[0.5] * 300],
             "expression_params": [[0.2] * 50], "eyelid_params": [[0.3, 0.4]], "jaw_params": [[0.2, 0.0, 0.0]]}
    (tmp_path / "smirk.json").write_text(json.dumps(smirk))
    sequence = load_sequence(tmp_path / "smirk.json")
    assert sequence.format == "SMIRK" and sequence.extra_params.tolist() == [[0.3, 0.4]]

    np.save(tmp_path / "identity.npy", np.arange(300, dtype=np.float32) / 300)
    sequence = load_sequence(tmp_path / "identity.npy")
    assert sequence.format == "MICA" and len(sequence) == 1 and sequence.shape[0, 299] == np.float32(299 / 300)


def test_key_mapping_with_euler_degrees(tmp_path):
    jaw_deg = np.array([[10.0, 0.0, 5.0], [20.0, -3.0, 0.0]])
    np.savez(tmp_path / "other.npz", exp_coeffs=np.ones((2, 20)), jaw=jaw_deg, ids=np.array([4, 9]))
    with pytest.raises(FlameFileError, match="unknown layout"):
        load_sequence(tmp_path / "other.npz")
    sequence = load_sequence(tmp_path / "other.npz", key_map={"expression": "exp_coeffs", "jaw_pose": "jaw", "frame_ids": "ids"},
                             rotation="euler", euler_order="XYZ", degrees=True)
    assert sequence.frame_ids.tolist() == [4, 9]
    for i in range(2):
        a, b, c = np.deg2rad(jaw_deg[i])
        expected = axis_rotation("x", a) @ axis_rotation("y", b) @ axis_rotation("z", c)
        np.testing.assert_allclose(rodrigues(sequence.jaw_pose[i]), expected, atol=1e-12)


@pytest.mark.parametrize("fmt", ["JSONL", "NPZ", "VHAP"])
def test_save_and_load_round_trip(tmp_path, fmt):
    values = random_sequence(5, seed=9)
    source = load_sequence(write_vhap(tmp_path / "tracked_flame_params.npz", values, ["1", "2", "5", "6", "9"]))
    source.fps = 25.0
    name = {"JSONL": "seq.jsonl", "NPZ": "seq.npz", "VHAP": "tracked_flame_params_out.npz"}[fmt]
    again = load_sequence(save_sequence(source, tmp_path / name, fmt))
    for key in ("shape", "expression", "global_pose", "neck_pose", "jaw_pose", "eye_pose", "transl", "frame_ids"):
        np.testing.assert_array_equal(getattr(again, key), getattr(source, key), err_msg=key)
    if fmt != "VHAP":
        assert again.fps == 25.0


def test_bad_sequences_raise_clear_errors(tmp_path):
    values = random_sequence(3, seed=10)
    bad = dict(values)
    bad["jaw_pose"] = values["jaw_pose"][:2]
    path = write_vhap(tmp_path / "counts.npz", bad, ["0", "1", "2"])
    assert_file_error(lambda: load_sequence(path), path, ["frame counts disagree"])
    nan = dict(values)
    nan["expr"] = values["expr"].copy()
    nan["expr"][1, 3] = np.nan
    path = write_vhap(tmp_path / "nan.npz", nan, ["0", "1", "2"])
    assert_file_error(lambda: load_sequence(path), path, ["expression", "NaN"])
    path = write_vhap(tmp_path / "offsets.npz", values, ["0", "1", "2"], np.zeros((1, 5023, 3)), np.zeros((3, 5143, 3)))
    assert_file_error(lambda: load_sequence(path), path, ["vertex count"])
    path = tmp_path / "unknown.npz"
    np.savez(path, foo=np.zeros(3))
    assert_file_error(lambda: load_sequence(path), path, ["unknown layout"])


class _System:
    def __reduce__(self):
        import os

        return (os.system, ("echo pwned > /dev/null",))


def test_hostile_and_truncated_torch_files_are_refused(tmp_path):
    path = tmp_path / "00000.frame"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("00000/data.pkl", pickle.dumps({"flame": _System()}, protocol=2))
        archive.writestr("00000/version", "3\n")
    with pytest.raises(UnsafePickleError):
        load_sequence(path)
    import torch

    good = tmp_path / "codes.pt"
    torch.save({"shape": torch.zeros(1, 100), "exp": torch.zeros(1, 50), "pose": torch.zeros(1, 6)}, good)
    data = good.read_bytes()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(data[: len(data) // 2])
    assert_file_error(lambda: load_sequence(truncated, format="DECA"), truncated, [])
    lying = tmp_path / "lying.pt"
    with zipfile.ZipFile(good) as source, zipfile.ZipFile(lying, "w") as target:
        for info in source.infolist():
            content = source.read(info)
            target.writestr(info, content[:8] if "/data/" in info.filename else content)
    assert_file_error(lambda: load_sequence(lying, format="DECA"), lying, ["storage"])
