"""FLAME texture models (albedo spaces) and the template OBJ's UVs.

Three linear texture models, all stored **BGR** with image row 0 = top of the UV square (v = 1):

- ``FLAME_texture.npz`` (kind ``flame_texture``): ``mean`` (512,512,3) 0..255, ``tex_dir``
  (512,512,3,200), ``vt``, ``ft``; sRGB.
- ``albedoModel2020_FLAME_albedoPart.npz`` (AlbedoMM, kind ``albedomm``): ``MU``/``specMU``
  (512,512,3) 0..1 linear, ``PC``/``specPC`` (512,512,3,145), ``vt``, ``ft``; diffuse and
  specular share one coefficient vector.
- ``FLAME_albedo_from_BFM.npz`` (kind ``bfm_albedo``): ``MU`` (512*512*3,), ``PC``
  (512*512*3, 199) flattened; no UVs (use the template's); linear.

:meth:`TextureModel.image` returns RGB float32 in 0..1 without copying the basis: the product
with the coefficients runs in bounded chunks over the raw array.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import FlameFileError, FlameParameterError
from .model_io import all_finite
from .numpy_files import load_npz
from .reader_guard import file_reader

TEXTURE_FILE_NAMES = {
    "flame_texture": "FLAME_texture.npz",
    "albedomm": "albedoModel2020_FLAME_albedoPart.npz",
    "bfm_albedo": "FLAME_albedo_from_BFM.npz",
}
TEMPLATE_MESH_FILE_NAME = "head_template_mesh.obj"
_CHUNK_ELEMENTS = 1 << 22  # basis elements per matrix-vector chunk (bounds temporaries)


def _flat(array: np.ndarray, trailing: int) -> tuple[np.ndarray, str]:
    """A 2-D ``(N, trailing)`` (or 1-D when trailing == 0) view of ``array`` and the memory
    order that makes it a view, never a copy of a big basis."""
    order = "F" if array.flags.f_contiguous and not array.flags.c_contiguous else "C"
    shape = (-1, trailing) if trailing else (-1,)
    return array.reshape(shape, order=order), order


def _combine(mean: np.ndarray, basis: np.ndarray, coefficients: Any, resolution: int) -> np.ndarray:
    """``mean + basis @ coefficients`` as float64 (H, W, 3), in the file's channel order."""
    n_components = basis.shape[-1]
    flat_mean, mean_order = _flat(mean, 0)
    result = flat_mean.astype(np.float64)
    if coefficients is not None:
        c = np.asarray(coefficients, dtype=np.float64).ravel()
        if c.size > n_components:
            raise FlameParameterError(
                f"{c.size} texture coefficients given; the model has {n_components}"
            )
        if not np.isfinite(c).all():
            raise FlameParameterError("texture coefficients hold NaN/inf")
        if c.size and np.any(c):
            c = np.concatenate([c, np.zeros(n_components - c.size)])
            # in the basis' own float type, so matmul never makes a converted copy of a chunk
            if basis.dtype.kind == "f":
                c = c.astype(basis.dtype)
            flat_basis, basis_order = _flat(basis, n_components)
            offset = np.zeros_like(result)
            rows = max(1, _CHUNK_ELEMENTS // n_components)
            for start in range(0, flat_basis.shape[0], rows):
                offset[start : start + rows] = flat_basis[start : start + rows] @ c
            if basis_order != mean_order:  # bring both to the (H, W, 3) element order
                offset = offset.reshape((resolution, resolution, 3), order=basis_order).ravel(
                    order=mean_order
                )
            result += offset
    return result.reshape((resolution, resolution, 3), order=mean_order)


@dataclass(frozen=True, eq=False)
class TextureModel:
    """A linear albedo model as loaded from its ``.npz``.

    Attributes:
        kind: "flame_texture", "albedomm" or "bfm_albedo".
        mean: the mean texture as in the file (BGR): (H, W, 3), or (H*W*3,) for bfm_albedo.
        basis: the components as in the file (BGR): (H, W, 3, K), or (H*W*3, K) for bfm_albedo.
        uvs: float64 (T, 2) UV coordinates (``vt``), or None (bfm_albedo: use the template's).
        uv_faces: int64 (F, 3) UV index per triangle corner (``ft``), or None.
        specular_mean, specular_basis: AlbedoMM's ``specMU`` (H, W, 3), ``specPC`` (H, W, 3, K).
        arrays: every array of the file by key, as loaded.
        source: the file.
    """

    kind: str
    mean: np.ndarray
    basis: np.ndarray
    uvs: np.ndarray | None = None
    uv_faces: np.ndarray | None = None
    specular_mean: np.ndarray | None = None
    specular_basis: np.ndarray | None = None
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    source: Path | None = None

    @property
    def n_components(self) -> int:
        return int(self.basis.shape[-1])

    @property
    def resolution(self) -> int:
        """Image side in pixels (the images are square)."""
        if self.mean.ndim == 3:
            return int(self.mean.shape[0])
        return math.isqrt(self.mean.size // 3)

    @property
    def colorspace(self) -> str:
        """Blender colour space of :meth:`image`: "sRGB" for the FLAME texture, else "Linear"."""
        return "sRGB" if self.kind == "flame_texture" else "Linear"

    @property
    def _scale(self) -> float:
        return 255.0 if self.kind == "flame_texture" else 1.0

    def image(self, coefficients: Any = None) -> np.ndarray:
        """The texture for ``coefficients`` (K' <= K values, the rest zero; None = the mean):
        float32 (H, W, 3) **RGB** in 0..1, row 0 = top of the UV square (v = 1)."""
        bgr = _combine(self.mean, self.basis, coefficients, self.resolution)
        return _to_rgb(bgr, self._scale)

    def specular_image(self, coefficients: Any = None) -> np.ndarray:
        """AlbedoMM's specular albedo for the same coefficients as :meth:`image`: float32
        (H, W, 3) RGB in 0..1."""
        if self.specular_mean is None or self.specular_basis is None:
            raise FlameParameterError(f"the {self.kind} texture model has no specular part")
        bgr = _combine(self.specular_mean, self.specular_basis, coefficients, self.resolution)
        return _to_rgb(bgr, self._scale)


def _to_rgb(bgr: np.ndarray, scale: float) -> np.ndarray:
    rgb = bgr[..., ::-1] / scale
    np.clip(rgb, 0.0, 1.0, out=rgb)
    return np.ascontiguousarray(rgb, dtype=np.float32)


def _numbers(path: Path, key: str, array: np.ndarray, ndim: int, text: str) -> np.ndarray:
    if array.dtype.kind not in "fiu":
        raise FlameFileError(path, f"key '{key}' has dtype {array.dtype}, expected numbers")
    if array.ndim != ndim:
        raise FlameFileError(path, f"key '{key}' has shape {array.shape}, expected {text}")
    if not all_finite(array):
        raise FlameFileError(path, f"key '{key}' holds NaN/inf; expected finite values")
    return array


def _image_pair(
    path: Path, arrays: dict, mean_key: str, basis_key: str
) -> tuple[np.ndarray, np.ndarray]:
    mean = _numbers(path, mean_key, arrays[mean_key], 3, "(H, W, 3) with H == W")
    if mean.shape[0] != mean.shape[1] or mean.shape[2] != 3:
        raise FlameFileError(
            path, f"key '{mean_key}' has shape {mean.shape}, expected (H, W, 3) with H == W"
        )
    basis = _numbers(path, basis_key, arrays[basis_key], 4, f"{mean.shape + ('K',)}")
    if basis.shape[:3] != mean.shape:
        raise FlameFileError(
            path, f"key '{basis_key}' has shape {basis.shape}, expected {mean.shape + ('K',)}"
        )
    return mean, basis


def _uv_arrays(path: Path, arrays: dict) -> tuple[np.ndarray, np.ndarray]:
    for key in ("vt", "ft"):
        if key not in arrays:
            raise FlameFileError(path, f"has no key '{key}'; expected UVs 'vt' and 'ft'")
    uvs = _numbers(path, "vt", arrays["vt"], 2, "(T, 2)")
    if uvs.shape[1] != 2:
        raise FlameFileError(path, f"key 'vt' has shape {uvs.shape}, expected (T, 2)")
    uv_faces = arrays["ft"]
    if uv_faces.dtype.kind not in "iu" or uv_faces.ndim != 2 or uv_faces.shape[1] != 3:
        raise FlameFileError(
            path,
            f"key 'ft' has dtype {uv_faces.dtype} shape {uv_faces.shape}, expected integer (F, 3)",
        )
    if uv_faces.size and (uv_faces.min() < 0 or uv_faces.max() >= uvs.shape[0]):
        raise FlameFileError(
            path,
            f"key 'ft' has UV indices {int(uv_faces.min())}..{int(uv_faces.max())}, out of "
            f"range; expected 0..{uvs.shape[0] - 1}",
        )
    return (
        np.ascontiguousarray(uvs, dtype=np.float64),
        np.ascontiguousarray(uv_faces, dtype=np.int64),
    )


@file_reader
def load_texture_model(path: str | Path) -> TextureModel:
    """Load ``FLAME_texture.npz``, AlbedoMM's ``albedoModel2020_FLAME_albedoPart.npz`` or
    ``FLAME_albedo_from_BFM.npz``; the kind is detected from the keys.

    Raises:
        FlameFileError: missing file, not an npz, pickled member, unknown keys, wrong shapes,
            NaN/inf, UV indices out of range.
    """
    path = Path(path).expanduser()
    arrays = load_npz(path)
    if "mean" in arrays and "tex_dir" in arrays:
        mean, basis = _image_pair(path, arrays, "mean", "tex_dir")
        uvs, uv_faces = _uv_arrays(path, arrays)
        return TextureModel("flame_texture", mean, basis, uvs, uv_faces, arrays=arrays, source=path)
    if "MU" in arrays and "PC" in arrays and arrays["MU"].ndim == 3:
        mean, basis = _image_pair(path, arrays, "MU", "PC")
        for key in ("specMU", "specPC"):
            if key not in arrays:
                raise FlameFileError(
                    path, f"has no key '{key}'; AlbedoMM files have specMU, specPC"
                )
        spec_mean, spec_basis = _image_pair(path, arrays, "specMU", "specPC")
        if spec_mean.shape != mean.shape or spec_basis.shape[-1] != basis.shape[-1]:
            raise FlameFileError(
                path,
                f"key 'specPC' has shape {spec_basis.shape}, expected {basis.shape} like 'PC' "
                "(diffuse and specular share the coefficients)",
            )
        uvs, uv_faces = _uv_arrays(path, arrays)
        return TextureModel(
            "albedomm", mean, basis, uvs, uv_faces, spec_mean, spec_basis, arrays, path
        )
    if "MU" in arrays and "PC" in arrays:
        mean = _numbers(path, "MU", arrays["MU"], 1, "(H*W*3,) flattened")
        size = mean.shape[0]
        resolution = math.isqrt(size // 3)
        if size == 0 or resolution * resolution * 3 != size:
            raise FlameFileError(
                path, f"key 'MU' has {size} values, expected res*res*3 (512*512*3 = 786432)"
            )
        basis = _numbers(path, "PC", arrays["PC"], 2, f"({size}, K)")
        if basis.shape[0] != size:
            raise FlameFileError(path, f"key 'PC' has shape {basis.shape}, expected ({size}, K)")
        return TextureModel("bfm_albedo", mean, basis, arrays=arrays, source=path)
    raise FlameFileError(
        path,
        f"has keys {sorted(arrays)}; expected a FLAME texture model: 'mean'+'tex_dir' "
        "(FLAME_texture.npz) or 'MU'+'PC' (AlbedoMM, FLAME_albedo_from_BFM.npz)",
    )


@dataclass(frozen=True, eq=False)
class TemplateMesh:
    """``head_template_mesh.obj``: vertices float64 (V, 3), faces int64 (F, 3), uvs float64
    (T, 2), uv_faces int64 (F, 3) (UV index per triangle corner, same corner order as faces),
    all 0-based. A mesh without UVs (MICA's ``head_template.obj``, a ``.ply``) has ``uvs``
    (0, 2) and ``uv_faces`` (0, 3)."""

    vertices: np.ndarray
    faces: np.ndarray
    uvs: np.ndarray
    uv_faces: np.ndarray
    source: Path | None = None

    @property
    def has_uvs(self) -> bool:
        return self.uv_faces.shape == self.faces.shape and self.uvs.shape[0] > 0


def _obj_index(path: Path, token: str, count: int, line_number: int, what: str) -> int:
    try:
        index = int(token)
    except ValueError:
        raise FlameFileError(
            path, f"line {line_number}: {what} index {token[:20]!r} is not a number"
        ) from None
    # OBJ indices are 1-based; negative ones count back from the last element read so far.
    index = index - 1 if index > 0 else count + index
    if not 0 <= index < count:
        raise FlameFileError(
            path, f"line {line_number}: {what} index {token[:20]} out of range 1..{count}"
        )
    return index


@file_reader
def load_template_mesh(path: str | Path) -> TemplateMesh:
    """Read ``head_template_mesh.obj`` (file or folder): LF or CRLF lines, ``f a/b a/b a/b``
    triangles with 1-based vertex/UV indices, or ``f a b c`` / ``f a//n ...`` without UVs
    (MICA's ``head_template.obj``: then ``uvs`` is (0, 2) and ``uv_faces`` (0, 3)). Vertex positions are returned as written (some
    copies are offset from the model's template).

    Raises:
        FlameFileError: missing file, non-triangle faces, faces with and without UVs mixed, bad
            numbers or indices out of range.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        path = path / TEMPLATE_MESH_FILE_NAME
    if not path.is_file():
        raise FlameFileError(path, f"no such file; expected {TEMPLATE_MESH_FILE_NAME}")
    text = path.read_bytes().decode("utf-8", errors="replace")
    vertices: list[list[float]] = []
    uvs: list[list[float]] = []
    faces: list[list[int]] = []
    uv_faces: list[list[int]] = []
    for line_number, line in enumerate(text.splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        tag = parts[0]
        try:
            if tag == "v":
                vertices.append([float(value) for value in parts[1:4]])
                if len(vertices[-1]) != 3:
                    raise ValueError("needs x y z")
            elif tag == "vt":
                uvs.append([float(value) for value in parts[1:3]])
                if len(uvs[-1]) != 2:
                    raise ValueError("needs u v")
        except ValueError as error:
            raise FlameFileError(path, f"line {line_number}: bad '{tag}' line ({error})") from error
        if tag != "f":
            continue
        corners = parts[1:]
        if len(corners) != 3:
            raise FlameFileError(
                path, f"line {line_number}: face with {len(corners)} corners, expected triangles"
            )
        face, uv_face = [], []
        for corner in corners:
            pieces = corner.split("/")
            face.append(_obj_index(path, pieces[0], len(vertices), line_number, "vertex"))
            if len(pieces) >= 2 and pieces[1]:
                uv_face.append(_obj_index(path, pieces[1], len(uvs), line_number, "UV"))
        if uv_face and len(uv_face) != 3:
            raise FlameFileError(
                path, f"line {line_number}: some corners of a face have UV indices, some not"
            )
        if faces and bool(uv_face) != bool(uv_faces):
            raise FlameFileError(
                path, f"line {line_number}: faces with and without UV indices (a/b and a) mixed"
            )
        faces.append(face)
        if uv_face:
            uv_faces.append(uv_face)
    if not vertices or not faces:
        raise FlameFileError(path, "has no vertices or faces; expected an OBJ mesh")
    # faces may come before all vertices in OBJ; indices were checked against what was read
    # so far, which is what OBJ's relative indices need and is stricter for absolute ones.
    vertex_array = np.array(vertices, dtype=np.float64)
    uv_array = np.array(uvs, dtype=np.float64).reshape(-1, 2)
    if not (np.isfinite(vertex_array).all() and np.isfinite(uv_array).all()):
        raise FlameFileError(path, "holds NaN/inf coordinates")
    return TemplateMesh(
        vertices=vertex_array,
        faces=np.array(faces, dtype=np.int64),
        uvs=uv_array,
        uv_faces=np.array(uv_faces, dtype=np.int64).reshape(-1, 3),
        source=path,
    )
