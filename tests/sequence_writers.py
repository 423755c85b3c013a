"""Sequence files written the way each tracker writes them, for the sequence tests.

Each generator follows its writer's source (named in its docstring): same key names, shapes,
dtypes (torch float32 tensors saved as float32 numpy), per-frame or per-sequence layout, file
names and containers. Rotations are made from geometry here (axis-angle -> matrix by the textbook
Rodrigues formula, 6D by pytorch3d's ``matrix_to_rotation_6d`` rule), never by the reader's code.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest


def rodrigues(r: np.ndarray) -> np.ndarray:
    theta = np.linalg.norm(r)
    if theta == 0.0:
        return np.eye(3)
    k = r / theta
    skew = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(theta) * skew + (1 - np.cos(theta)) * skew @ skew


def axis_rotation(axis: str, angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return {
        "x": np.array([[1, 0, 0], [0, c, -s], [0, s, c]]),
        "y": np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]),
        "z": np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]),
    }[axis]


def matrix_to_rotation_6d(matrix: np.ndarray) -> np.ndarray:
    """pytorch3d: ``matrix[..., :2, :].clone().reshape(batch_dim + (6,))``."""
    return matrix[..., :2, :].reshape(matrix.shape[:-2] + (6,))


def random_sequence(count: int, n_shape: int = 300, n_expression: int = 100, seed: int = 0) -> dict:
    """Per-frame FLAME values (float32 like the trackers' tensors), axis-angle poses."""
    rng = np.random.default_rng(seed)
    f32 = np.float32
    return {
        "shape": (rng.standard_normal(n_shape) * 0.5).astype(f32),
        "expr": (rng.standard_normal((count, n_expression)) * 0.5).astype(f32),
        "rotation": (rng.standard_normal((count, 3)) * 0.2).astype(f32),
        "neck_pose": (rng.standard_normal((count, 3)) * 0.1).astype(f32),
        "jaw_pose": (np.abs(rng.standard_normal((count, 3))) * [0.2, 0.02, 0.02]).astype(f32),
        "eyes_pose": (rng.standard_normal((count, 6)) * 0.1).astype(f32),
        "translation": (rng.standard_normal((count, 3)) * 0.02).astype(f32),
    }


def write_vhap(path: Path, values: dict, timestep_ids: list[str], static_offset=None, dynamic_offset=None) -> Path:
    """vhap/model/tracker.py ``save_result``: ``np.savez(out_dir / 'tracked_flame_params.npz')``
    with keys in its order, ``timestep_id = np.array(dataset.timestep_ids)`` (strings),
    ``n_processed_frames`` (int), optional offsets, and ``image_size``."""
    export = {key: values[key] for key in ("rotation", "translation", "neck_pose", "jaw_pose", "eyes_pose", "shape", "expr")}
    export["timestep_id"] = np.array(timestep_ids)
    export["n_processed_frames"] = len(timestep_ids)
    export["tex"] = np.zeros((1, 100), np.float32)
    if static_offset is not None:
        export["static_offset"] = static_offset.astype(np.float32)  # (1, V, 3)
    if dynamic_offset is not None:
        export["dynamic_offset"] = dynamic_offset.astype(np.float32)  # (T, V, 3)
    export["image_size"] = np.array([512, 512])
    np.savez(path, **export)
    return path


def write_gaussian_avatars(path: Path, values: dict, static_offset: np.ndarray) -> Path:
    """GaussianAvatars ``FlameGaussianModel.save_ply`` -> ``flame_param.npz``:
    ``np.savez(str(npz_path), **self.flame_param)`` with static_offset (1, V, 3)."""
    params = {key: values[key] for key in ("shape", "expr", "rotation", "neck_pose", "jaw_pose", "eyes_pose", "translation")}
    params["static_offset"] = static_offset.astype(np.float32)
    np.savez(path, **params)
    return path


def write_nersemble(path: Path, values: dict, euler: np.ndarray, scale: float, frames: np.ndarray) -> Path:
    """nersemble_benchmark ``FlameTracking``: shape (1, 300), expression (T, 100), rotation
    (T, 3) Euler XYZ, rotation_matrices (T, 3, 3), translation, jaw, neck, eyes, frames, scale (1, 1)."""
    matrices = np.stack([axis_rotation("x", a) @ axis_rotation("y", b) @ axis_rotation("z", c) for a, b, c in euler])
    np.savez(
        path, shape=values["shape"][None], expression=values["expr"], rotation=euler.astype(np.float32),
        rotation_matrices=matrices.astype(np.float32), translation=values["translation"],
        jaw=values["jaw_pose"], frames=frames, scale=np.array([[scale]], np.float32),
        neck=values["neck_pose"], eyes=values["eyes_pose"],
    )
    return path


def write_metrical_frames(folder: Path, values: dict, cameras: list[tuple], frame_ids: list[int]) -> Path:
    """metrical-tracker tracker.py ``save_checkpoint``: ``torch.save(frame,
    f'{checkpoint_folder}/{frame_id}.frame')`` of a dict of numpy arrays (``.cpu().numpy()``):
    flame.exp (1, 100), shape (1, 300), tex (1, 140), sh (1, 9, 3), eyes (1, 12), eyelids (1, 2),
    jaw (1, 6) (6D); camera.R (1, 6), t, fl, pp; opencv.R (1, 3, 3), t (1, 3), K (1, 3, 3);
    img_size = image_size[0]; frame_id; global_step. ``cameras`` holds (R, t, K) per frame."""
    torch = pytest.importorskip("torch")  # files written by torch.save itself; 4.x envs have none

    folder.mkdir(parents=True, exist_ok=True)
    f32 = np.float32
    for i, frame_id in enumerate(frame_ids):
        jaw = matrix_to_rotation_6d(rodrigues(values["jaw_pose"][i].astype(np.float64)))[None]
        eyes = np.concatenate([
            matrix_to_rotation_6d(rodrigues(values["eyes_pose"][i, :3].astype(np.float64))),
            matrix_to_rotation_6d(rodrigues(values["eyes_pose"][i, 3:].astype(np.float64))),
        ])[None]
        rotation, translation, k = cameras[i]
        frame = {
            "flame": {
                "exp": values["expr"][i : i + 1], "shape": values["shape"][None],
                "tex": np.zeros((1, 140), f32), "sh": np.zeros((1, 9, 3), f32),
                "eyes": eyes.astype(f32), "eyelids": values["eyelids"][i : i + 1], "jaw": jaw.astype(f32),
            },
            "camera": {"R": np.zeros((1, 6), f32), "t": np.zeros((1, 3), f32),
                       "fl": np.ones((1, 1), f32), "pp": np.zeros((1, 2), f32)},
            "opencv": {"R": rotation[None].astype(f32), "t": translation[None].astype(f32), "K": k[None].astype(f32)},
            "img_size": np.array([512, 512]),
            "frame_id": f"{frame_id:05d}",
            "global_step": 100 * i,
        }
        torch.save(frame, folder / f"{frame_id:05d}.frame")
    return folder


def fht_euler_to_matrix(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """flame-head-tracker utils/graphics_utils.py ``euler_to_matrix``: ``Rz @ Ry @ Rx``."""
    return axis_rotation("z", roll) @ axis_rotation("y", yaw) @ axis_rotation("x", pitch)


def write_flame_head_tracker(folder: Path, values: dict, cams: np.ndarray, focal: float, size: int, frame_ids: list[int]) -> Path:
    """flame-head-tracker tracker_video.py: ``np.savez_compressed(f'{fid}.npz', **ret_dict)`` with
    each key sliced ``[j:j+1]``: shape, exp, head_pose (zeros), jaw_pose, neck_pose (zeros),
    eye_pose, tex, light, cam (1, 6) = (yaw, pitch, roll, x, y, z), fov (1,), K (1, 3, 3)."""
    folder.mkdir(parents=True, exist_ok=True)
    k = np.array([[focal, 0, size / 2], [0, focal, size / 2], [0, 0, 1]], np.float32)
    for i, fid in enumerate(frame_ids):
        np.savez_compressed(
            folder / f"{fid}.npz",
            shape=values["shape"][None], exp=values["expr"][i : i + 1], head_pose=np.zeros((1, 3), np.float32),
            jaw_pose=values["jaw_pose"][i : i + 1], neck_pose=np.zeros((1, 3), np.float32),
            eye_pose=values["eyes_pose"][i : i + 1], tex=np.zeros((1, 50), np.float32),
            light=np.zeros((1, 9, 3), np.float32), cam=cams[i : i + 1].astype(np.float32),
            fov=np.array([20.0], np.float32), K=k[None],
        )
    return folder


def fht_project(points: np.ndarray, cam: np.ndarray, k: np.ndarray, size: int) -> np.ndarray:
    """flame-head-tracker's own projection (utils/graphics_utils.py ``batch_perspective_projection``,
    ``batch_verts_clip_to_ndc``, ``batch_verts_ndc_to_screen``), with the camera rotation built
    from the saved Euler angles as its writer does: pixels ``(N, 2)``."""
    rt = np.eye(4)
    rt[:3, :3] = fht_euler_to_matrix(*cam[:3])
    rt[:3, 3] = cam[3:6]
    rt[:, [1, 2]] *= -1
    world2view = np.linalg.inv(rt)
    fx, fy, cx, cy = k[0, 0], k[1, 1], k[0, 2], k[1, 2]
    near, far = 0.1, 10.0
    proj = np.array([
        [2 * fx / size, 0, (size - 2 * cx) / size, 0],
        [0, 2 * fy / size, (size - 2 * cy) / size, 0],
        [0, 0, (far + near) / (far - near), -2 * far * near / (far - near)],
        [0, 0, 1, 0],
    ])
    full = proj @ world2view
    full[1, :] *= -1
    clip = np.concatenate([points, np.ones((len(points), 1))], 1) @ full.T
    ndc = clip[:, :3] / clip[:, 3:4]
    ndc[:, 1] *= -1
    return (ndc[:, :2] / 2.0 + 0.5) * size


def write_vhap_export(folder: Path, values: dict, c2w: list[np.ndarray], intrinsics: tuple, static_offset: np.ndarray) -> Path:
    """vhap/export_as_nerf_dataset.py: ``flame_param/{ti:05d}.npz`` from ``write_flame_param``
    (``[[tid]]`` slices, unbatched shape, static_offset as tracked), ``transforms.json`` from
    ``write_json`` with per-frame ``transform_matrix`` (camera-to-world), fl_x, fl_y, cx, cy, h, w."""
    (folder / "flame_param").mkdir(parents=True, exist_ok=True)
    fl_x, fl_y, cx, cy, w, h = intrinsics
    frames = []
    for ti in range(values["expr"].shape[0]):
        params = {key: values[key][[ti]] for key in ("translation", "rotation", "neck_pose", "jaw_pose", "eyes_pose")}
        params["shape"] = values["shape"]
        params["expr"] = values["expr"][[ti]]
        params["static_offset"] = static_offset
        np.savez(folder / "flame_param" / f"{ti:05d}.npz", **params)
        for camera_index in (1, 0):  # two cameras per timestep; the reader takes index 0
            matrix = c2w[ti] if camera_index == 0 else np.eye(4)
            frames.append({
                "timestep_index": ti, "timestep_index_original": ti, "timestep_id": f"frame_{ti:05d}",
                "camera_index": camera_index, "camera_id": str(camera_index),
                "cx": cx, "cy": cy, "fl_x": fl_x, "fl_y": fl_y, "h": h, "w": w,
                "camera_angle_x": 0.5, "camera_angle_y": 0.5, "transform_matrix": matrix.tolist(),
                "file_path": f"images/{ti:05d}_{camera_index:02d}.png",
                "flame_param_path": f"flame_param/{ti:05d}.npz",
            })
    db = {"frames": frames, "cx": cx, "cy": cy, "fl_x": fl_x, "fl_y": fl_y, "h": h, "w": w,
          "timestep_indices": list(range(values["expr"].shape[0])), "camera_indices": [0, 1]}
    (folder / "transforms.json").write_text(json.dumps(db, indent=4))
    np.savez(folder / "canonical_flame_param.npz", shape=values["shape"], jaw_pose=np.array([[0.3, 0, 0]]))
    return folder


def write_emoca(folder: Path, count: int, seed: int = 0) -> dict:
    """gdl_apps/EMOCA/utils/io.py ``save_codes``: per image a folder with ``np.save`` of
    shape (100,), exp (50,), tex (50,), pose (6,), detail (128,)."""
    rng = np.random.default_rng(seed)
    codes = {"shape": rng.standard_normal((count, 100)), "exp": rng.standard_normal((count, 50)),
             "pose": rng.standard_normal((count, 6)) * 0.1}
    for i in range(count):
        sub = folder / f"{i * 2:06d}_000"
        sub.mkdir(parents=True)
        for name in ("shape", "exp", "pose"):
            np.save(sub / f"{name}.npy", codes[name][i].astype(np.float32))
        np.save(sub / "tex.npy", np.zeros(50, np.float32))
        np.save(sub / "detail.npy", np.zeros(128, np.float32))
    return codes
