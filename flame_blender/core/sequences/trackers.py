"""Readers for the sequence files face trackers and avatar methods write.

Each reader follows its writer's source (named in the docstring): key names, shapes and where
head motion lives. All return a :class:`~.sequence.FlameSequence`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import FlameFileError
from ._common import (
    FLIP_YZ,
    frame_ids_from,
    get,
    identity,
    intrinsic,
    numbered_files,
    per_frame,
    rotation_frames,
)
from .containers import read_arrays
from .conventions import euler_to_matrix
from .sequence import FlameSequence, SequenceCameras, build_sequence

#: Keys of VHAP's ``save_result`` and GaussianAvatars' ``flame_param.npz`` -> FLAME names.
VHAP_KEYS = {
    "shape": "shape", "expr": "expression", "rotation": "global_pose", "neck_pose": "neck_pose",
    "jaw_pose": "jaw_pose", "eyes_pose": "eye_pose", "translation": "transl",
}


def _vhap_frames(arrays: dict, path: Path) -> dict[str, np.ndarray]:
    frames = {"shape": identity(get(arrays, path, "shape"), path, "shape")}
    for key, name in VHAP_KEYS.items():
        if key != "shape":
            frames[name] = per_frame(get(arrays, path, key), path, key)
    return frames


def _offsets(arrays: dict, path: Path) -> dict[str, np.ndarray]:
    out = {}
    static = arrays.get("static_offset")
    if static is not None:
        static = np.asarray(static, dtype=np.float64)
        out["static_offset"] = static[0] if static.ndim == 3 and static.shape[0] == 1 else static
    dynamic = arrays.get("dynamic_offset")
    if dynamic is not None:
        out["dynamic_offset"] = np.asarray(dynamic, dtype=np.float32)
    return out


def read_vhap(path: Path) -> FlameSequence:
    """VHAP ``tracked_flame_params[_<epoch>].npz`` (vhap/model/tracker.py ``save_result``):
    per-sequence arrays ``(T, n)``, ``shape (300,)``, ``timestep_id (T,)``, optional offsets.
    Global rotation is the model's root joint; translation is added after skinning."""
    arrays = read_arrays(path)
    frames = _vhap_frames(arrays, path)
    count = frames["expression"].shape[0]
    ids = frame_ids_from(arrays["timestep_id"], count) if "timestep_id" in arrays else None
    return build_sequence(path, "VHAP", frames, ids, model="FLAME 2023", **_offsets(arrays, path))


def read_gaussian_avatars(path: Path) -> FlameSequence:
    """GaussianAvatars ``flame_param.npz`` (scene/flame_gaussian_model.py): VHAP's keys
    without frame ids; ``static_offset (V, 3)`` or ``(1, V, 3)``."""
    arrays = read_arrays(path)
    frames = _vhap_frames(arrays, path)
    return build_sequence(path, "GAUSSIAN_AVATARS", frames, None, model="FLAME 2023", **_offsets(arrays, path))


def read_vhap_export(folder: Path) -> FlameSequence:
    """VHAP's NeRF-style export (vhap/export_as_nerf_dataset.py): ``transforms.json`` with an
    OpenGL camera-to-world ``transform_matrix`` and ``fl_x, fl_y, cx, cy, w, h`` per frame
    record, and ``flame_param/{timestep:05d}.npz`` (VHAP keys with a leading axis of 1).

    Several cameras can share a timestep; the one with the lowest ``camera_index`` is used."""
    transforms = folder / "transforms.json"
    try:
        db = json.loads(transforms.read_text(encoding="utf-8"))
        records = list(db["frames"])
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as error:
        raise FlameFileError(transforms, f"is not a VHAP transforms.json ({error}); expected 'frames'") from None
    chosen: dict[int, dict] = {}
    for record in records:
        try:
            timestep = int(record["timestep_index"])
            camera = int(record.get("camera_index", 0))
        except (KeyError, TypeError, ValueError):
            raise FlameFileError(transforms, "a frame record has no integer 'timestep_index'") from None
        if timestep not in chosen or camera < int(chosen[timestep].get("camera_index", 0)):
            chosen[timestep] = record
    files = numbered_files(folder / "flame_param", "*.npz")
    if not files:
        raise FlameFileError(folder / "flame_param", "has no .npz files; expected flame_param/00000.npz ...")
    parts: dict[str, list] = {}
    static = None
    dynamic = []
    for _, file in files:
        arrays = read_arrays(file)
        for name, value in _vhap_frames(arrays, file).items():
            parts.setdefault(name, []).append(value if value.ndim == 2 else value[None])
        offsets = _offsets(arrays, file)
        static = offsets.get("static_offset", static)
        if "dynamic_offset" in offsets:
            dynamic.append(np.asarray(offsets["dynamic_offset"]).reshape(-1, 3))
    frames = {name: np.concatenate(values) for name, values in parts.items()}
    ids = np.array([number for number, _ in files], dtype=np.int64)
    missing = [int(i) for i in ids if int(i) not in chosen]
    if missing:
        raise FlameFileError(transforms, f"has no camera for timesteps {missing[:5]}; expected one per flame_param file")
    cameras = _nerf_cameras([chosen[int(i)] for i in ids], db, transforms)
    extras = {"static_offset": static} if static is not None else {}
    if dynamic and len(dynamic) == len(files):
        extras["dynamic_offset"] = np.stack(dynamic).astype(np.float32)
    return build_sequence(folder, "VHAP_EXPORT", frames, ids, cameras=cameras, model="FLAME 2023", **extras)


def _nerf_cameras(records: list[dict], db: dict, path: Path) -> SequenceCameras:
    intrinsics, world_to_camera, sizes = [], [], []
    for record in records:
        def value(key: str, record: dict = record) -> float:
            try:
                return float(record.get(key, db.get(key)))
            except (TypeError, ValueError):
                raise FlameFileError(path, f"a frame record has no number {key!r}") from None
        c2w = np.asarray(record.get("transform_matrix"), dtype=np.float64)
        if c2w.shape != (4, 4) or not np.all(np.isfinite(c2w)):
            raise FlameFileError(path, "a frame's 'transform_matrix' is not a finite 4x4 matrix")
        intrinsics.append(intrinsic(value("fl_x"), value("fl_y"), value("cx"), value("cy")))
        world_to_camera.append(FLIP_YZ @ np.linalg.inv(c2w))  # OpenGL camera-to-world -> OpenCV
        sizes.append((value("w"), value("h")))
    return SequenceCameras(np.array(intrinsics), np.array(world_to_camera), np.array(sizes))


def read_video_head_tracker(path: Path) -> FlameSequence:
    """video-head-tracker ``tracked_flame_params.npz`` (vht/model/tracking.py ``_export_result``).

    ``frame (T,)`` holds the frame numbers. Uncalibrated runs add ``K (3,)`` =
    ``(f / max(h, w), cx / w, cy / h)`` and ``RT (3, 4)``, a pytorch3d camera (row vectors,
    x left, y up); ``image_size`` is ``(h, w)``."""
    arrays = read_arrays(path)
    frames = _vhap_frames(arrays, path)
    count = frames["expression"].shape[0]
    ids = frame_ids_from(arrays["frame"], count) if "frame" in arrays else None
    cameras = None
    if "K" in arrays and "RT" in arrays and "image_size" in arrays:
        k = np.asarray(get(arrays, path, "K"), dtype=np.float64).reshape(-1)
        rt = np.asarray(get(arrays, path, "RT"), dtype=np.float64)
        size = np.asarray(get(arrays, path, "image_size"), dtype=np.float64).reshape(-1)
        if k.shape != (3,) or rt.shape != (3, 4) or size.shape != (2,):
            raise FlameFileError(path, f"K {k.shape} / RT {rt.shape} / image_size {size.shape}; expected (3,), (3, 4), (2,)")
        height, width = size
        focal = k[0] * max(height, width)
        w2c = np.eye(4)
        w2c[:3, :3] = rt[:, :3].T  # pytorch3d: X_cam = X_world @ R + T
        w2c[:3, 3] = rt[:, 3]
        w2c = np.diag([-1.0, -1.0, 1.0, 1.0]) @ w2c  # pytorch3d camera axes -> OpenCV
        cameras = SequenceCameras(
            np.repeat(intrinsic(focal, focal, k[1] * width, k[2] * height)[None], count, 0),
            np.repeat(w2c[None], count, 0),
            np.repeat(np.array([[width, height]]), count, 0),
        )
    return build_sequence(path, "VIDEO_HEAD_TRACKER", frames, ids, cameras=cameras, model="FLAME 2020")


def read_nersemble(path: Path) -> FlameSequence:
    """NeRSemble benchmark tracking npz (nersemble_benchmark FlameTracking / FlameProvider):
    skinning with zero global rotation, then ``v = scale * R @ v + translation`` with R from
    scipy's intrinsic Euler ``'XYZ'`` radians. That model-to-world transform is kept as
    :attr:`FlameSequence.object_transform` (the Blender import animates the object with it)."""
    arrays = read_arrays(path)
    expression = per_frame(get(arrays, path, "expression"), path, "expression")
    count = expression.shape[0]
    frames = {
        "shape": identity(get(arrays, path, "shape"), path, "shape"),
        "expression": expression,
        "jaw_pose": per_frame(get(arrays, path, "jaw"), path, "jaw", 3),
        "neck_pose": per_frame(get(arrays, path, "neck"), path, "neck", 3),
        "eye_pose": per_frame(get(arrays, path, "eyes"), path, "eyes", 6),
    }
    rotation = per_frame(get(arrays, path, "rotation"), path, "rotation", 3)
    translation = per_frame(get(arrays, path, "translation"), path, "translation", 3)
    scale = np.asarray(get(arrays, path, "scale"), dtype=np.float64).reshape(-1)
    if scale.shape[0] not in (1, count) or rotation.shape[0] != count or translation.shape[0] != count:
        raise FlameFileError(path, f"rotation/translation/scale disagree with {count} expression frames")
    if not np.all(np.isfinite(rotation)) or not np.all(np.isfinite(translation)) or not np.all(np.isfinite(scale)):
        raise FlameFileError(path, "rotation, translation or scale holds NaN or inf")
    transform = np.repeat(np.eye(4)[None], count, 0)
    transform[:, :3, :3] = euler_to_matrix(rotation, "XYZ") * scale.reshape(-1, 1, 1)
    transform[:, :3, 3] = translation
    ids = frame_ids_from(arrays["frames"], count) if "frames" in arrays else None
    return build_sequence(path, "NERSEMBLE", frames, ids, object_transform=transform, model="FLAME 2023")


def read_metrical_tracker(path: Path) -> FlameSequence:
    """metrical-tracker ``checkpoint/{frame:05d}.frame`` (tracker.py ``save_checkpoint``): a
    ``torch.save`` zip of a dict of numpy arrays, read without torch. ``flame.jaw (1, 6)`` and
    ``flame.eyes (1, 12)`` are pytorch3d 6D; ``flame.eyelids (1, 2)`` are the eyelid
    blendshapes' coefficients; head motion is in ``opencv.R/t/K`` (for the saved crop)."""
    folder = path if path.is_dir() else None
    files = numbered_files(folder, "*.frame") if folder else [(0, path)]
    if folder and not files and (folder / "checkpoint").is_dir():
        files = numbered_files(folder / "checkpoint", "*.frame")
    if not files:
        raise FlameFileError(path, "has no .frame files; expected metrical-tracker checkpoint/*.frame")
    parts: dict[str, list] = {}
    ids, intrinsics, world_to_camera, sizes, eyelids = [], [], [], [], []
    for number, file in files:
        arrays = read_arrays(file)
        parts.setdefault("shape", []).append(per_frame(get(arrays, file, "flame.shape"), file, "flame.shape"))
        parts.setdefault("expression", []).append(per_frame(get(arrays, file, "flame.exp"), file, "flame.exp"))
        parts.setdefault("jaw_pose", []).append(rotation_frames(get(arrays, file, "flame.jaw"), file, "flame.jaw", 1, "6d"))
        parts.setdefault("eye_pose", []).append(rotation_frames(get(arrays, file, "flame.eyes"), file, "flame.eyes", 2, "6d"))
        lids = arrays.get("flame.eyelids")
        eyelids.append(per_frame(lids, file, "flame.eyelids", 2) if lids is not None else np.zeros((1, 2)))
        rotation = np.asarray(get(arrays, file, "opencv.R"), dtype=np.float64).reshape(3, 3)
        translation = np.asarray(get(arrays, file, "opencv.t"), dtype=np.float64).reshape(3)
        matrix = np.eye(4)
        matrix[:3, :3], matrix[:3, 3] = rotation, translation
        world_to_camera.append(matrix)
        intrinsics.append(np.asarray(get(arrays, file, "opencv.K"), dtype=np.float64).reshape(3, 3))
        size = np.asarray(get(arrays, file, "img_size"), dtype=np.float64).reshape(-1)[:2]
        sizes.append((size[1], size[0]))  # img_size is (height, width)
        frame_id = arrays.get("frame_id")
        ids.append(frame_ids_from([frame_id], 1)[0] if frame_id is not None and folder is None else number)
    frames = {name: np.concatenate(values) for name, values in parts.items()}
    cameras = SequenceCameras(np.array(intrinsics), np.array(world_to_camera), np.array(sizes))
    return build_sequence(
        path, "METRICAL_TRACKER", frames, np.array(ids), cameras=cameras, model="FLAME 2020",
        extra_names=("l_eyelid", "r_eyelid"), extra_params=np.concatenate(eyelids),
    )


def fht_camera_to_world(cam: np.ndarray) -> np.ndarray:
    """flame-head-tracker ``cam (6,)`` = (yaw, pitch, roll, x, y, z), radians, as saved by
    tracker_base.py: R = Rz(roll) @ Ry(yaw) @ Rx(pitch) (utils/graphics_utils.py
    ``euler_to_matrix``); ``[R | t]`` is an OpenGL camera-to-world pose ``(4, 4)``."""
    yaw, pitch, roll = cam[0], cam[1], cam[2]
    rotation = euler_to_matrix(np.array([roll, yaw, pitch]), "ZYX")
    pose = np.eye(4)
    pose[:3, :3], pose[:3, 3] = rotation, cam[3:6]
    return pose


def read_flame_head_tracker(folder: Path) -> FlameSequence:
    """flame-head-tracker per-frame ``{frame_id}.npz`` (tracker_video.py, tracker_base.py
    ``ret_dict``): ``shape (1, 300), exp (1, 100), head_pose, jaw_pose, neck_pose (1, 3),
    eye_pose (1, 6), cam (1, 6), fov (1,), K (1, 3, 3)``. Head motion is in the camera.
    Its renderer puts the principal point at ``(S - cx, S - cy)`` for an S x S image; K is
    centred, so the OpenCV camera is K itself with S = 2 cx."""
    files = numbered_files(folder, "*.npz") if folder.is_dir() else [(0, folder)]
    if not files:
        raise FlameFileError(folder, "has no .npz files; expected flame-head-tracker {frame}.npz")
    parts: dict[str, list] = {}
    intrinsics, world_to_camera, sizes = [], [], []
    names = {"shape": "shape", "exp": "expression", "head_pose": "global_pose", "jaw_pose": "jaw_pose",
             "neck_pose": "neck_pose", "eye_pose": "eye_pose"}
    for _, file in files:
        arrays = read_arrays(file)
        for key, name in names.items():
            parts.setdefault(name, []).append(per_frame(get(arrays, file, key), file, key))
        cam = np.asarray(get(arrays, file, "cam"), dtype=np.float64).reshape(-1)
        k = np.asarray(get(arrays, file, "K"), dtype=np.float64).reshape(3, 3)
        if cam.shape != (6,):
            raise FlameFileError(file, f"key 'cam' has {cam.size} values; expected 6")
        world_to_camera.append(FLIP_YZ @ np.linalg.inv(fht_camera_to_world(cam)))
        width, height = 2.0 * k[0, 2], 2.0 * k[1, 2]
        intrinsics.append(intrinsic(k[0, 0], k[1, 1], width - k[0, 2], height - k[1, 2]))
        sizes.append((width, height))
    frames = {name: np.concatenate(values) for name, values in parts.items()}
    cameras = SequenceCameras(np.array(intrinsics), np.array(world_to_camera), np.array(sizes))
    ids = np.array([number for number, _ in files])
    return build_sequence(folder, "FLAME_HEAD_TRACKER", frames, ids, cameras=cameras, model="FLAME 2020")
