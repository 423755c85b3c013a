"""Where the files beside a FLAME model are, and whether the head's UVs and a texture agree.

One rule for core and Blender alike: the extras (masks, template OBJ with the UVs, textures,
landmark embeddings) are read **beside the path the user named**. A ``generic_model.pkl`` that
is a symbolic link into a shared folder reads the files in the link's folder, not the target's
(clusters often link one model into many experiment folders, each with its own extras); the
path is made absolute without resolving links (:func:`absolute_path`).

UVs of the head come from the first of:

1. ``head_template_mesh.obj`` (FLAME's download), then ``head_template.obj`` (DECA's data
   folder holds it under this name). An OBJ without ``vt`` lines (MICA's ``head_template.obj``
   has none) is skipped, with a note saying so;
2. the ``vt`` / ``ft`` arrays of a texture model beside the model (``FLAME_texture.npz``,
   ``albedoModel2020_FLAME_albedoPart.npz``).

A head without UVs cannot show an albedo: :func:`albedo_problem` says why, and the callers
refuse (``flame.apply_albedo``) or render a plain colour and record "no albedo" (the batch).
A texture whose own UV layout (``vt``/``ft``) differs from the head's would be applied
scrambled; :func:`albedo_problem` reports that too.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import FlameFileError

TEMPLATE_MESH_FILE_NAMES = ("head_template_mesh.obj", "head_template.obj")
UV_TEXTURE_FILE_NAMES = ("FLAME_texture.npz", "albedoModel2020_FLAME_albedoPart.npz")
#: Largest difference (UV units) between the texture's and the head's per-corner UVs that still
#: counts as the same layout: the OBJ stores 6-8 decimals, the npz float64.
UV_TOLERANCE = 1e-4


def absolute_path(path: str | Path) -> Path:
    """``path`` made absolute (``~`` expanded, ``..`` folded) without resolving symbolic links."""
    return Path(os.path.abspath(Path(path).expanduser()))


def extras_folder(model_path: str | Path) -> Path:
    """The folder whose files go with the model ``model_path`` names: the folder itself, or the
    folder holding the named file (the link's folder for a symbolic link)."""
    path = absolute_path(model_path)
    return path if path.is_dir() else path.parent


def obj_has_uvs(path: str | Path) -> bool:
    """Whether the OBJ file has any ``vt`` line (without parsing the rest)."""
    try:
        with open(path, "rb") as handle:
            return any(line.lstrip().startswith(b"vt ") for line in handle)
    except (OSError, MemoryError) as error:  # unreadable, or one endless "line" of binary data
        raise FlameFileError(path, f"cannot be read ({type(error).__name__}: {error})") from None


@dataclass
class HeadUVs:
    """The head's per-corner UVs ``(3F, 2)`` float32 (None: none found), the file they came
    from, and notes on files that were skipped and why."""

    corner_uvs: np.ndarray | None = None
    source: Path | None = None
    notes: list[str] = field(default_factory=list)


def find_head_uvs(folder: str | Path, faces: np.ndarray) -> HeadUVs:
    """The head's UVs from the files in ``folder`` (see the module docstring).

    Raises ``FlameFileError`` for a broken file; an OBJ without UVs, or one for other triangles,
    is skipped with a note.
    """
    from .texture_io import load_template_mesh

    folder = Path(folder)
    faces = np.asarray(faces, np.int64)
    result = HeadUVs()
    for name in TEMPLATE_MESH_FILE_NAMES:
        path = folder / name
        if not path.is_file():
            continue
        if not obj_has_uvs(path):
            result.notes.append(f"{path}: skipped, it has no UV coordinates (MICA's copy of the template has none)")
            continue
        template = load_template_mesh(path)
        uv_faces = getattr(template, "uv_faces", None)
        if uv_faces is None or uv_faces.shape != faces.shape or not np.array_equal(template.faces, faces):
            result.notes.append(f"{path}: skipped, its triangles are not the model's")
            continue
        result.corner_uvs = np.asarray(template.uvs, np.float32)[np.asarray(uv_faces, np.int64).reshape(-1)]
        result.source = path
        return result
    for name in UV_TEXTURE_FILE_NAMES:
        path = folder / name
        uvs = texture_file_uvs(path, faces.shape[0]) if path.is_file() else None
        if uvs is not None:
            result.corner_uvs, result.source = uvs, path
            return result
    return result


def texture_file_uvs(path: Path, n_faces: int) -> np.ndarray | None:
    """Per-corner UVs ``(3F, 2)`` from ``vt``/``ft`` of a texture model, reading only those two
    members (not the large image basis); None when it has none."""
    from .numpy_files import load_npz  # the strict reader: limits, no pickles, FlameFileError only

    arrays = load_npz(path, only=("vt", "ft"))
    if "vt" not in arrays or "ft" not in arrays:
        return None
    uvs, uv_faces = arrays["vt"], arrays["ft"]
    if (
        uvs.ndim != 2 or uvs.shape[1] != 2 or uv_faces.shape != (n_faces, 3)
        or uv_faces.dtype.kind not in "iu" or uv_faces.size == 0 or uv_faces.max() >= uvs.shape[0]
    ):
        raise FlameFileError(
            path, f"UVs 'vt' {uvs.shape} / 'ft' {uv_faces.shape} do not fit the model's "
            f"{n_faces} triangles; expected (T, 2) and ({n_faces}, 3) with indices below T"
        )
    return np.asarray(uvs, np.float32)[uv_faces.astype(np.int64).reshape(-1)]


def albedo_problem(texture_model, head_corner_uvs: np.ndarray | None, n_faces: int) -> str | None:
    """Why ``texture_model`` (a :class:`~.texture_io.TextureModel`) cannot be shown on a head with
    per-corner UVs ``head_corner_uvs (3F, 2)`` (None: the head has none), or None when it can.

    The texture's own UV layout, when it has one (``vt``/``ft``), must be the head's: the same
    triangle count and the same coordinate at every triangle corner. The BFM albedo has none
    and is drawn for FLAME's template UVs.
    """
    source = getattr(texture_model, "source", None) or getattr(texture_model, "kind", "texture")
    if head_corner_uvs is None:
        return (
            f"no albedo: the head has no UV map, so {Path(str(source)).name} cannot be placed on it "
            f"(no {' or '.join(TEMPLATE_MESH_FILE_NAMES)} with UVs and no texture file with "
            "'vt'/'ft' beside the model)"
        )
    uvs, uv_faces = getattr(texture_model, "uvs", None), getattr(texture_model, "uv_faces", None)
    if uvs is None or uv_faces is None:
        return None
    head = np.asarray(head_corner_uvs, np.float64).reshape(-1, 3, 2)
    if uv_faces.shape != (n_faces, 3) or head.shape[0] != n_faces:
        return (
            f"no albedo: {source} is laid out for {uv_faces.shape[0]} triangles ({len(uvs)} UVs); "
            f"the head has {n_faces}"
        )
    texture = np.asarray(uvs, np.float64)[np.asarray(uv_faces, np.int64)]
    difference = np.abs(texture - head).max(axis=2).max(axis=1)
    wrong = int((difference > UV_TOLERANCE).sum())
    if wrong:
        return (
            f"no albedo: the UV layout of {source} differs from the head's UVs at {wrong} of "
            f"{n_faces} triangles (by up to {difference.max():.3g}); its image would land scrambled"
        )
    return None
