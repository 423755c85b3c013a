"""``load_sequence``: find the format of a file or folder, read it, check it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from ..errors import FlameFileError
from ..io.reader_guard import file_reader
from . import codes, trackers
from .containers import read_arrays
from .sequence import FlameSequence

#: Format name -> (reader, what it reads). The names are the operator's ``format`` items.
FORMATS: dict[str, tuple[Callable[[Path], FlameSequence], str]] = {
    "VHAP": (trackers.read_vhap, "VHAP tracked_flame_params*.npz"),
    "VHAP_EXPORT": (trackers.read_vhap_export, "VHAP export folder (flame_param/ + transforms.json)"),
    "GAUSSIAN_AVATARS": (trackers.read_gaussian_avatars, "GaussianAvatars flame_param.npz"),
    "VIDEO_HEAD_TRACKER": (trackers.read_video_head_tracker, "video-head-tracker tracked_flame_params.npz"),
    "NERSEMBLE": (trackers.read_nersemble, "NeRSemble tracking npz"),
    "METRICAL_TRACKER": (trackers.read_metrical_tracker, "metrical-tracker checkpoint/*.frame"),
    "FLAME_HEAD_TRACKER": (trackers.read_flame_head_tracker, "flame-head-tracker per-frame npz folder"),
    "EMOCA": (codes.read_emoca, "EMOCA per-image code folders"),
    "DECA": (codes.read_code_dict, "DECA/SMIRK code dict (.npz, .pt, .json)"),
    "MICA": (codes.read_mica, "MICA identity.npy"),
    "FLAME_BLENDER": (codes.read_own, "this project's parameters .jsonl / .npz"),
}
_ALIASES = {"SMIRK": "DECA"}


def detect_format(path: str | Path) -> str:
    """The name in :data:`FORMATS` of the sequence at ``path`` (a file or a folder).

    Raises ``FlameFileError`` for a layout none of the readers knows (say which were looked for).
    """
    path = Path(path).expanduser()
    if path.is_dir():
        return _detect_folder(path)
    if not path.is_file():
        raise FlameFileError(path, "no such file or folder")
    suffix = path.suffix.lower()
    if suffix == ".frame":
        return "METRICAL_TRACKER"
    if suffix == ".jsonl":
        return "FLAME_BLENDER"
    if suffix == ".npy":
        return "MICA"
    keys = set(read_arrays(path))
    return _detect_keys(path, keys)


def _detect_keys(path: Path, keys: set[str]) -> str:
    vhap = {"rotation", "translation", "neck_pose", "jaw_pose", "eyes_pose", "shape", "expr"}
    if vhap <= keys:
        if "timestep_id" in keys:
            return "VHAP"
        if {"frame", "n_processed"} & keys:
            return "VIDEO_HEAD_TRACKER"
        return "GAUSSIAN_AVATARS"
    if {"expression", "jaw", "neck", "eyes", "rotation", "translation", "scale"} <= keys:
        return "NERSEMBLE"
    if {"flame.exp", "flame.jaw", "flame.eyes"} <= keys:
        return "METRICAL_TRACKER"
    if {"cam", "exp", "eye_pose", "jaw_pose", "K"} <= keys:
        return "FLAME_HEAD_TRACKER"
    if set(codes.SMIRK_KEYS) <= keys or set(codes.DECA_KEYS) <= keys:
        return "DECA"
    if keys & {"expression", "global_pose", "eye_pose", "transl"} and keys <= {*codes.PARAMETER_NAMES, "frame_ids", "fps", "extra_params", "extra_names"}:
        return "FLAME_BLENDER"
    raise FlameFileError(
        path, f"unknown layout (keys {sorted(keys)[:12]}); expected one of: "
        + "; ".join(text for _, text in FORMATS.values())
        + ". For another layout give a key mapping, e.g. {\"expression\": \"exp_coeffs\"}"
    )


def _detect_folder(folder: Path) -> str:
    if (folder / "transforms.json").is_file() and (folder / "flame_param").is_dir():
        return "VHAP_EXPORT"
    if any(folder.glob("*.frame")) or any((folder / "checkpoint").glob("*.frame")):
        return "METRICAL_TRACKER"
    if (folder / "exp.npy").is_file() or any(child.is_dir() and (child / "exp.npy").is_file() for child in folder.iterdir()):
        return "EMOCA"
    files = sorted(folder.glob("*.npz"))
    if files:
        name = _detect_keys(files[0], set(read_arrays(files[0])))
        if name == "FLAME_HEAD_TRACKER":
            return name
        raise FlameFileError(folder, f"holds .npz files of format {name}; pick one file, not the folder")
    raise FlameFileError(
        folder, "unknown layout: expected a VHAP export (transforms.json + flame_param/), "
        "metrical-tracker .frame files, EMOCA code folders or flame-head-tracker .npz files"
    )


@file_reader  # the net under the format readers: only FlameFileError leaves
def load_sequence(
    path: str | Path,
    format: str = "auto",
    key_map: Mapping[str, str] | None = None,
    rotation: str = "axis_angle",
    euler_order: str = "XYZ",
    degrees: bool = False,
) -> FlameSequence:
    """Read a tracked FLAME sequence (no bpy, no torch).

    Args:
        path: a file or a folder of per-frame files.
        format: "auto" or a name of :data:`FORMATS` (case-insensitive; "SMIRK" reads as "DECA").
        key_map: for any other layout, FLAME name -> the file's key, e.g.
            ``{"expression": "exp_coeffs", "jaw_pose": "jaw"}``; then ``rotation`` says how the
            pose keys are written ("axis_angle", "6d", "matrix", "euler" with ``euler_order``,
            e.g. "XYZ" intrinsic, and ``degrees``).

    Returns a :class:`FlameSequence` with frames in frame-id order. Raises ``FlameFileError``
    (unknown layout, disagreeing frame counts, NaN, bad offsets, hostile files).
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise FlameFileError(path, "no such file or folder; expected a tracked sequence")
    if path.name == "transforms.json" and (path.parent / "flame_param").is_dir():
        path = path.parent  # a VHAP export is read as its folder
    if key_map:
        return codes.read_with_mapping(path, key_map, rotation, euler_order, degrees)
    name = format.upper()
    name = _ALIASES.get(name, name)
    if name == "AUTO":
        name = detect_format(path)
    if name not in FORMATS:
        raise FlameFileError(path, f"unknown format {format!r}; expected auto or one of {sorted(FORMATS)}")
    reader = FORMATS[name][0]
    return reader(path)
