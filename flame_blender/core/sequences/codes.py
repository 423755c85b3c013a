"""Readers for per-image code files (EMOCA, DECA, SMIRK, MICA), this project's own
parameter sequences, and any other layout through a user's key mapping."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ..errors import FlameFileError
from ..io.json_lines import read_json_lines
from ..model.parameters import PARAMETER_NAMES, POSE_SIZES
from ._common import frame_ids_from, frame_number, get, identity, per_frame, rotation_frames
from .containers import read_arrays
from .sequence import FlameSequence, build_sequence


def _rows(value: np.ndarray | None, path: Path, key: str, width: int | None = None) -> np.ndarray | None:
    return None if value is None else per_frame(value, path, key, width)


def read_emoca(path: Path) -> FlameSequence:
    """EMOCA ``save_codes`` (gdl_apps/EMOCA/utils/io.py): one folder per image with
    ``shape.npy (100,)``, ``exp.npy (50,)``, ``pose.npy (6,)`` = global then jaw axis-angle.
    ``path`` is one such folder or a folder of them (frame ids from the folder names)."""
    folders = [path] if (path / "shape.npy").is_file() else sorted(
        child for child in path.iterdir() if child.is_dir() and (child / "exp.npy").is_file()
    )
    if not folders:
        raise FlameFileError(path, "has no EMOCA code folders (shape.npy, exp.npy, pose.npy)")
    parts: dict[str, list] = {"shape": [], "expression": [], "global_pose": [], "jaw_pose": []}
    for folder in folders:
        arrays = {name: read_arrays(folder / f"{name}.npy")[""] for name in ("shape", "exp", "pose")
                  if (folder / f"{name}.npy").is_file()}
        parts["shape"].append(per_frame(get(arrays, folder, "shape"), folder, "shape"))
        parts["expression"].append(per_frame(get(arrays, folder, "exp"), folder, "exp"))
        pose = per_frame(get(arrays, folder, "pose"), folder, "pose", 6)
        parts["global_pose"].append(pose[:, :3])
        parts["jaw_pose"].append(pose[:, 3:])
    frames = {name: np.concatenate(values) for name, values in parts.items()}
    ids = frame_ids_from([folder.name for folder in folders], len(folders))
    return build_sequence(path, "EMOCA", frames, ids, model="FLAME 2020")


#: DECA ``decompose_code`` and SMIRK encoder output keys.
DECA_KEYS = ("shape", "exp", "pose")
SMIRK_KEYS = ("shape_params", "expression_params", "pose_params", "jaw_params")


def read_code_dict(path: Path) -> FlameSequence:
    """DECA/SMIRK-style code dicts saved as ``.npz``, ``.pt`` or ``.json``: one row per image.

    DECA (decalib/deca.py): ``shape (B, 100), exp (B, 50), pose (B, 6)`` = global + jaw.
    SMIRK (src/smirk_encoder.py): ``shape_params, expression_params, pose_params (B, 3),
    jaw_params (B, 3), eyelid_params (B, 2)``. Cameras are orthographic and are not imported."""
    arrays = read_arrays(path)
    extras = {}
    if all(key in arrays for key in SMIRK_KEYS):
        frames = {
            "shape": per_frame(get(arrays, path, "shape_params"), path, "shape_params"),
            "expression": per_frame(get(arrays, path, "expression_params"), path, "expression_params"),
            "global_pose": per_frame(get(arrays, path, "pose_params"), path, "pose_params", 3),
            "jaw_pose": per_frame(get(arrays, path, "jaw_params"), path, "jaw_params", 3),
        }
        name = "SMIRK"
        if "eyelid_params" in arrays:
            extras = {"extra_names": ("l_eyelid", "r_eyelid"),
                      "extra_params": per_frame(arrays["eyelid_params"], path, "eyelid_params", 2)}
    elif all(key in arrays for key in DECA_KEYS):
        pose = per_frame(get(arrays, path, "pose"), path, "pose", 6)
        frames = {
            "shape": per_frame(get(arrays, path, "shape"), path, "shape"),
            "expression": per_frame(get(arrays, path, "exp"), path, "exp"),
            "global_pose": pose[:, :3],
            "jaw_pose": pose[:, 3:],
        }
        name = "DECA"
    else:
        raise FlameFileError(path, f"is not a DECA or SMIRK code dict; expected keys {DECA_KEYS} or {SMIRK_KEYS}")
    return build_sequence(path, name, frames, None, model="FLAME 2020", **extras)


def read_mica(path: Path) -> FlameSequence:
    """MICA ``identity.npy`` (demo.py): the identity ``(300,)`` of one subject, one frame."""
    value = read_arrays(path)[""]
    shape = identity(value, path, "identity")
    if shape.ndim != 1:
        raise FlameFileError(path, f"has shape {value.shape}; expected a MICA identity (300,)")
    return build_sequence(path, "MICA", {"shape": shape[None]}, None, model="FLAME 2020")


#: Optional per-frame keys of this project's own sequence files, besides PARAMETER_NAMES.
OWN_EXTRA_KEYS = ("frame_id", "fps", "extra_params")


def read_own(path: Path) -> FlameSequence:
    """This project's sequences: ``.jsonl`` (one parameter object a line, optional
    ``frame_id``, ``fps``, ``extra_params``) or ``.npz`` (the parameter names with a leading
    frame axis, optional ``frame_ids (F,)``, ``fps ()``, ``extra_params``, ``extra_names``)."""
    if path.suffix.lower() == ".jsonl":
        records = read_json_lines(path, "parameters")
        if not records:
            raise FlameFileError(path, "has no parameter lines")
        rows: dict[str, list] = {}
        ids, fps = [], None
        for line, record in records:
            if not isinstance(record, Mapping):
                raise FlameFileError(path, f"line {line} is not a JSON object")
            unknown = set(record) - set(PARAMETER_NAMES) - set(OWN_EXTRA_KEYS) - {"extra_names"}
            if unknown:
                raise FlameFileError(path, f"line {line}: unknown keys {sorted(unknown)}")
            for name in PARAMETER_NAMES:
                default = [0.0] * POSE_SIZES.get(name, 0)
                try:
                    rows.setdefault(name, []).append(np.asarray(record.get(name, default), dtype=np.float64))
                except (TypeError, ValueError):
                    raise FlameFileError(path, f"line {line}: {name} is not a list of numbers") from None
            if "extra_params" in record:
                rows.setdefault("extra_params", []).append(np.asarray(record["extra_params"], dtype=np.float64))
            ids.append(record.get("frame_id", len(ids)))
            fps = record.get("fps", fps)
        try:
            frames = {name: np.stack(values) for name, values in rows.items()}
        except ValueError:
            raise FlameFileError(path, "lines disagree on the number of coefficients") from None
        extra_names = tuple(records[0][1].get("extra_names", ()))
        ids_array = frame_ids_from(ids, len(ids))
    else:
        arrays = read_arrays(path)
        frames = {name: per_frame(arrays[name], path, name) for name in PARAMETER_NAMES if name in arrays}
        if "extra_params" in arrays:
            frames["extra_params"] = per_frame(arrays["extra_params"], path, "extra_params")
        fps = float(arrays["fps"]) if "fps" in arrays else None
        extra_names = tuple(str(n) for n in np.asarray(arrays.get("extra_names", [])).reshape(-1))
        count = next(iter(frames.values())).shape[0] if frames else 0
        ids_array = frame_ids_from(arrays["frame_ids"], count) if "frame_ids" in arrays else None
    extra = frames.pop("extra_params", None)
    extras = {"extra_names": extra_names, "extra_params": extra} if extra is not None else {}
    sequence = build_sequence(path, "FLAME_BLENDER", frames, ids_array, **extras)
    sequence.fps = float(fps) if fps else None
    return sequence


#: Names a key mapping may use (FLAME's), and their width; rotations are converted.
MAPPING_NAMES = {"shape": 0, "expression": 0, **POSE_SIZES, "frame_ids": 1, "extra_params": 0}
ROTATION_NAMES = {"global_pose": 1, "neck_pose": 1, "jaw_pose": 1, "eye_pose": 2}


def read_with_mapping(path: Path, key_map: Mapping[str, str], rotation: str = "axis_angle",
                      euler_order: str = "XYZ", degrees: bool = False) -> FlameSequence:
    """Any npz/pt/json/folder-less layout through ``key_map`` (FLAME name -> file key),
    e.g. ``{"expression": "exp_coeffs", "jaw_pose": "jaw"}``; rotations are in ``rotation``
    ("axis_angle", "6d", "matrix", "euler" with ``euler_order`` and ``degrees``)."""
    unknown = sorted(set(key_map) - set(MAPPING_NAMES))
    if unknown:
        raise FlameFileError(path, f"key mapping names {unknown}; expected some of {sorted(MAPPING_NAMES)}")
    arrays = read_arrays(path)
    frames = {}
    for name, key in key_map.items():
        value = get(arrays, path, key)
        if name in ROTATION_NAMES:
            joints = ROTATION_NAMES[name]
            if value.ndim == 1 or (value.ndim == 2 and rotation == "matrix" and value.shape == (3, 3)):
                value = value[None]
            frames[name] = rotation_frames(value, path, key, joints, rotation, euler_order, degrees)
        elif name in ("shape", "expression"):
            frames[name] = identity(value, path, key) if name == "shape" else per_frame(value, path, key)
        elif name != "frame_ids":
            frames[name] = per_frame(value, path, key, MAPPING_NAMES[name] or None)
    extra = frames.pop("extra_params", None)
    counts = [v.shape[0] for v in frames.values() if v.ndim == 2]
    ids = None
    if "frame_ids" in key_map and counts:
        ids = frame_ids_from(get(arrays, path, key_map["frame_ids"]), counts[0])
    extras = {"extra_params": extra, "extra_names": tuple(f"extra_{i}" for i in range(extra.shape[1]))} if extra is not None else {}
    return build_sequence(path, "MAPPING", frames, ids, **extras)


def parse_key_map(text: str) -> dict[str, str]:
    """A key mapping from its JSON text (the operator property); ``""`` is an empty mapping."""
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise FlameFileError(None, f"key mapping is not valid JSON ({error})") from None
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise FlameFileError(None, 'key mapping must be a JSON object of strings, e.g. {"expression": "exp"}')
    return value


__all__ = ["frame_number", "parse_key_map", "read_code_dict", "read_emoca", "read_mica", "read_own", "read_with_mapping"]
