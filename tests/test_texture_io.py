"""Texture models and the template OBJ: images equal the formula, bad files are named."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from file_errors import assert_file_error

from flame_blender.core.errors import FlameFileError, FlameParameterError
from flame_blender.core.io.texture_io import load_template_mesh, load_texture_model

RES = 8


def _expected(mean: np.ndarray, basis: np.ndarray, c: np.ndarray, scale: float) -> np.ndarray:
    """The texture formula written out independently: per pixel, per BGR channel, a sum."""
    res = mean.shape[0]
    out = np.zeros((res, res, 3))
    for y in range(res):
        for x in range(res):
            for channel in range(3):
                value = float(mean[y, x, channel])
                for k, ck in enumerate(c):
                    value += float(basis[y, x, channel, k]) * ck
                out[y, x, 2 - channel] = min(max(value / scale, 0.0), 1.0)  # BGR -> RGB
    return out


def _uvs(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    return rng.random((20, 2)), rng.integers(0, 20, size=(30, 3)).astype(np.int32)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(11)


def test_flame_texture(tmp_path: Path, rng: np.random.Generator) -> None:
    mean = rng.uniform(60, 190, size=(RES, RES, 3)).astype(np.float32)
    basis = rng.normal(0, 10, size=(RES, RES, 3, 6)).astype(np.float32)
    vt, ft = _uvs(rng)
    path = tmp_path / "FLAME_texture.npz"
    np.savez(path, mean=mean, tex_dir=basis, vt=vt, ft=ft)
    model = load_texture_model(path)
    assert model.kind == "flame_texture" and model.colorspace == "sRGB"
    assert model.resolution == RES and model.n_components == 6
    assert np.array_equal(model.uvs, vt) and model.uvs.dtype == np.float64
    assert np.array_equal(model.uv_faces, ft) and model.uv_faces.dtype == np.int64
    assert model.mean is model.arrays["mean"] and model.basis.dtype == np.float32  # raw arrays

    c = rng.normal(size=6)
    image = model.image(c)
    assert image.dtype == np.float32 and image.shape == (RES, RES, 3)
    assert np.allclose(image, _expected(mean, basis, c, 255.0), atol=1e-5)
    assert np.allclose(model.image(), _expected(mean, basis, [], 255.0), atol=1e-6)
    # fewer coefficients: the rest are zero
    assert np.allclose(model.image(c[:2]), _expected(mean, basis, c[:2], 255.0), atol=1e-5)
    with pytest.raises(FlameParameterError, match="7 texture coefficients"):
        model.image(np.zeros(7))
    with pytest.raises(FlameParameterError, match="no specular"):
        model.specular_image()


def test_image_is_clipped_and_rows_stay_top_first(tmp_path: Path) -> None:
    mean = np.zeros((RES, RES, 3))
    mean[0, :, 0] = 255.0  # top row blue (BGR channel 0)
    basis = np.ones((RES, RES, 3, 1)) * 1000
    np.savez(tmp_path / "t.npz", mean=mean, tex_dir=basis, vt=np.zeros((3, 2)),
             ft=np.zeros((1, 3), dtype=np.int64))  # fmt: skip
    model = load_texture_model(tmp_path / "t.npz")
    image = model.image()
    assert np.array_equal(image[0, :, 2], np.ones(RES)) and image[1:].max() == 0
    assert model.image([1.0]).max() == 1.0 and model.image([-1.0]).min() == 0.0


def test_fortran_ordered_arrays(tmp_path: Path, rng: np.random.Generator) -> None:
    mean = np.asfortranarray(rng.uniform(0.2, 0.8, size=(RES, RES, 3)))
    basis = np.asfortranarray(rng.normal(0, 0.05, size=(RES, RES, 3, 4)))
    spec_mean = rng.uniform(0.1, 0.5, size=(RES, RES, 3))
    spec_basis = np.asfortranarray(rng.normal(0, 0.05, size=(RES, RES, 3, 4)))
    vt, ft = _uvs(rng)
    path = tmp_path / "albedoModel2020_FLAME_albedoPart.npz"
    np.savez(path, MU=mean, PC=basis, specMU=spec_mean, specPC=spec_basis, vt=vt, ft=ft)
    model = load_texture_model(path)
    assert model.kind == "albedomm" and model.colorspace == "Linear"
    assert model.basis.flags.f_contiguous  # kept as loaded
    c = rng.normal(size=4)
    assert np.allclose(model.image(c), _expected(mean, basis, c, 1.0), atol=1e-6)
    # diffuse and specular share the coefficients
    assert np.allclose(model.specular_image(c), _expected(spec_mean, spec_basis, c, 1.0), atol=1e-6)


def test_bfm_albedo_flattened(tmp_path: Path, rng: np.random.Generator) -> None:
    res = 6
    mean = rng.uniform(0.2, 0.8, size=res * res * 3)
    basis = rng.normal(0, 0.05, size=(res * res * 3, 5))
    path = tmp_path / "FLAME_albedo_from_BFM.npz"
    np.savez(path, MU=mean, PC=basis)
    model = load_texture_model(path)
    assert model.kind == "bfm_albedo" and model.resolution == res and model.n_components == 5
    assert model.uvs is None and model.uv_faces is None and model.colorspace == "Linear"
    c = rng.normal(size=5)
    expected = _expected(mean.reshape(res, res, 3), basis.reshape(res, res, 3, 5), c, 1.0)
    assert np.allclose(model.image(c), expected, atol=1e-6)


def test_image_memory_is_bounded(tmp_path: Path) -> None:
    """image() must not copy the basis: its peak allocation stays far below the basis' size
    (at 512x512x200 float32 the basis is 629 MB)."""
    res, k = 64, 200
    basis = np.full((res, res, 3, k), 0.001, dtype=np.float32)
    np.savez(tmp_path / "FLAME_texture.npz", mean=np.full((res, res, 3), 100, np.float32),
             tex_dir=basis, vt=np.zeros((3, 2)), ft=np.zeros((1, 3), dtype=np.int64))  # fmt: skip
    model = load_texture_model(tmp_path / "FLAME_texture.npz")
    c = np.ones(k)
    tracemalloc.start()
    try:
        image = model.image(c)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert np.allclose(image, (100 + 0.2) / 255, atol=1e-6)
    assert peak < basis.nbytes / 10, (peak, basis.nbytes)


BAD_TEXTURES = {
    "unknown_keys": ({"a": np.zeros(3)}, ["'a'", "expected a FLAME texture model"]),
    "not_square": ({"mean": np.zeros((4, 5, 3)), "tex_dir": np.zeros((4, 5, 3, 2))}, ["'mean'", "H == W"]),
    "basis_shape": ({"mean": np.zeros((4, 4, 3)), "tex_dir": np.zeros((4, 4, 2, 2))}, ["'tex_dir'", "(4, 4, 3, 'K')"]),
    "missing_uvs": ({"mean": np.zeros((4, 4, 3)), "tex_dir": np.zeros((4, 4, 3, 2))}, ["'vt'"]),
    "uv_index_range": ({"mean": np.zeros((4, 4, 3)), "tex_dir": np.zeros((4, 4, 3, 2)), "vt": np.zeros((3, 2)), "ft": np.array([[0, 1, 3]])}, ["'ft'", "out of range", "0..2"]),
    "nan_mean": ({"MU": np.full((4, 4, 3), np.nan), "PC": np.zeros((4, 4, 3, 2))}, ["'MU'", "NaN"]),
    "albedomm_no_spec": ({"MU": np.zeros((4, 4, 3)), "PC": np.zeros((4, 4, 3, 2)), "vt": np.zeros((3, 2)), "ft": np.zeros((1, 3), int)}, ["'specMU'"]),
    "bfm_size": ({"MU": np.zeros(50), "PC": np.zeros((50, 2))}, ["'MU'", "res*res*3"]),
    "bfm_basis": ({"MU": np.zeros(48), "PC": np.zeros((47, 2))}, ["'PC'", "(48, K)"]),
    "string_mean": ({"MU": np.full(48, "x"), "PC": np.zeros((48, 2))}, ["'MU'", "numbers"]),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD_TEXTURES))
def test_bad_texture_files(tmp_path: Path, case: str) -> None:
    arrays, words = BAD_TEXTURES[case]
    path = tmp_path / "tex.npz"
    np.savez(path, **arrays)
    assert_file_error(lambda: load_texture_model(path), path, words)


@pytest.mark.parametrize(
    "setup, words",
    [("missing", ["no such file"]), ("not_npz", ["not an .npz"]),
     ("pickled", ["'mean'", "pickled"]), ("truncated", ["not"])],
)  # fmt: skip
def test_unreadable_texture_files(tmp_path: Path, setup: str, words: list[str]) -> None:
    path = tmp_path / "FLAME_texture.npz"
    if setup == "not_npz":
        path.write_text("hello")
    elif setup == "pickled":
        np.savez(path, mean=np.array([None, 1], dtype=object))
    elif setup == "truncated":
        np.savez(path, mean=np.zeros((32, 32, 3)), tex_dir=np.zeros((32, 32, 3, 2)))
        path.write_bytes(path.read_bytes()[:5000])
    assert_file_error(lambda: load_texture_model(path), path, words)


# --- head_template_mesh.obj ---------------------------------------------------------------------

OBJ = """# template
v 0.0 1.5 0.0
v 1.0 1.5 0.0
v 0.0 2.5 0.0
v 1.0 2.5 1.0
vt 0.0 0.0
vt 1.0 0.0
vt 0.0 1.0
vt 1.0 1.0
vt 0.5 0.5
f 1/1 2/2 3/3
f 2/2 4/5 3/3
"""


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_template_mesh(tmp_path: Path, newline: str) -> None:
    path = tmp_path / "head_template_mesh.obj"
    path.write_bytes(OBJ.replace("\n", newline).encode())
    mesh = load_template_mesh(tmp_path)
    assert mesh.vertices.dtype == np.float64 and mesh.vertices.shape == (4, 3)
    assert np.array_equal(mesh.vertices[3], [1.0, 2.5, 1.0])  # positions as written (offset)
    assert mesh.faces.dtype == np.int64 and np.array_equal(mesh.faces, [[0, 1, 2], [1, 3, 2]])
    assert np.array_equal(mesh.uv_faces, [[0, 1, 2], [1, 4, 2]])
    assert np.array_equal(mesh.uvs[4], [0.5, 0.5]) and mesh.uvs.shape == (5, 2)


def test_template_mesh_with_normals_and_negative_indices(tmp_path: Path) -> None:
    text = OBJ.replace("f 2/2 4/5 3/3", "f -3/-4/1 -1/-1/1 -2/-3/1").replace(
        "# template", "vn 0 0 1"
    )
    path = tmp_path / "m.obj"
    path.write_text(text)
    assert np.array_equal(load_template_mesh(path).faces[1], [1, 3, 2])
    assert np.array_equal(load_template_mesh(path).uv_faces[1], [1, 4, 2])


@pytest.mark.parametrize(
    "change, words",
    [
        (("f 1/1 2/2 3/3", "f 1/1 2/2 3/3 4/4"), ["line 11", "4 corners", "triangles"]),
        (("f 1/1 2/2 3/3", "f 1 2 3"), ["line 12", "with and without UV indices"]),
        (("f 1/1 2/2 3/3", "f 1/1 2/2 9/3"), ["line 11", "vertex index 9", "1..4"]),
        (("f 1/1 2/2 3/3", "f 1/1 2/2 3/8"), ["line 11", "UV index 8"]),
        (("v 1.0 2.5 1.0", "v 1.0 abc 1.0"), ["line 5", "bad 'v' line"]),
    ],
)
def test_bad_template_mesh(tmp_path: Path, change: tuple[str, str], words: list[str]) -> None:
    path = tmp_path / "head_template_mesh.obj"
    path.write_text(OBJ.replace(*change))
    assert_file_error(lambda: load_template_mesh(path), path, words)


def test_template_mesh_missing(tmp_path: Path) -> None:
    with pytest.raises(FlameFileError, match="head_template_mesh.obj"):
        load_template_mesh(tmp_path)


# --- the synthetic folder -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, kind, mean_key, basis_key, scale",
    [
        ("FLAME_texture.npz", "flame_texture", "mean", "tex_dir", 255.0),
        ("albedoModel2020_FLAME_albedoPart.npz", "albedomm", "MU", "PC", 1.0),
        ("FLAME_albedo_from_BFM.npz", "bfm_albedo", "MU", "PC", 1.0),
    ],
)
def test_synthetic_textures(flame_dir: Path, name: str, kind: str, mean_key: str,
                            basis_key: str, scale: float) -> None:  # fmt: skip
    model = load_texture_model(flame_dir / name)
    assert model.kind == kind
    with np.load(flame_dir / name) as npz:
        mean, basis = npz[mean_key], npz[basis_key]
    res = model.resolution
    mean = mean.reshape(res, res, 3)
    basis = basis.reshape(res, res, 3, -1)
    c = np.random.default_rng(0).normal(size=3)
    # the formula in numpy (the loop version above is too slow at this size)
    expected = (mean + basis[..., :3] @ c)[..., ::-1] / scale
    assert np.allclose(model.image(c), np.clip(expected, 0, 1), atol=1e-5)
    assert np.allclose(model.image(), np.clip(mean[..., ::-1] / scale, 0, 1), atol=1e-6)
    assert model.image().min() >= 0.0 and model.image().max() <= 1.0
    if kind == "albedomm":
        with np.load(flame_dir / name) as npz:
            spec = (npz["specMU"] + npz["specPC"][..., :3] @ c)[..., ::-1]
        assert np.allclose(model.specular_image(c), np.clip(spec, 0, 1), atol=1e-5)


def test_synthetic_template_mesh_matches_the_model(flame_dir: Path) -> None:
    from flame_blender.core.io.model_io import load_flame

    mesh = load_template_mesh(flame_dir)
    model = load_flame(flame_dir / "generic_model.pkl")
    assert mesh.vertices.shape == (5023, 3) and mesh.faces.shape == (9976, 3)
    assert np.array_equal(mesh.faces, model["f"].astype(np.int64))
    offset = mesh.vertices - model["v_template"]  # some copies are shifted as a whole
    assert np.allclose(offset, offset[0], atol=1e-5)
    texture = load_texture_model(flame_dir / "FLAME_texture.npz")
    assert np.array_equal(texture.uv_faces, mesh.uv_faces)
    assert np.allclose(texture.uvs, mesh.uvs, atol=1e-5)
