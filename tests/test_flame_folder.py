"""Data folders as other tools lay them out: DECA's (``head_template.obj``), MICA's template
without UVs, a symlinked model, and a texture drawn for other UVs. Real Blender (bpy)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

from flame_blender import core  # noqa: E402
from flame_blender.blender import import_head  # noqa: E402
from flame_blender.blender.render.operators import apply_albedo  # noqa: E402
from flame_blender.core.errors import FlameParameterError  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent


def obj_corner_uvs(path: Path) -> np.ndarray:
    """Per-corner UVs ``(3F, 2)`` of an OBJ with ``f a/b a/b a/b`` lines, read here by hand."""
    uvs, corners = [], []
    for line in path.read_text().splitlines():
        parts = line.split()
        if parts and parts[0] == "vt":
            uvs.append([float(parts[1]), float(parts[2])])
        elif parts and parts[0] == "f":
            corners.extend(int(corner.split("/")[1]) - 1 for corner in parts[1:4])
    return np.array(uvs)[corners]


def mesh_corner_uvs(obj) -> np.ndarray | None:
    layer = obj.data.uv_layers.active
    if layer is None:
        return None
    uvs = np.empty(2 * len(layer.data), np.float32)
    layer.data.foreach_get("uv", uvs)
    return uvs.reshape(-1, 2)


def deca_folder(flame_dir: Path, folder: Path, template_with_uvs: bool = True) -> Path:
    """A data folder laid out as DECA's ``data/``: generic_model.pkl, head_template.obj,
    FLAME_albedo_from_BFM.npz (no UVs of its own), landmark_embedding.npy."""
    folder.mkdir()
    for name in ("generic_model.pkl", "FLAME_albedo_from_BFM.npz", "landmark_embedding.npy"):
        shutil.copy(flame_dir / name, folder / name)
    text = (flame_dir / "head_template_mesh.obj").read_text()
    if not template_with_uvs:  # MICA's copy: v and f lines only
        lines = []
        for line in text.splitlines():
            if line.startswith("vt "):
                continue
            if line.startswith("f "):
                line = "f " + " ".join(corner.split("/")[0] for corner in line.split()[1:])
            lines.append(line)
        text = "\n".join(lines) + "\n"
    (folder / "head_template.obj").write_text(text)
    return folder


def test_deca_folder_gives_the_head_its_template_uvs(blender_scene, flame_dir, tmp_path):
    folder = deca_folder(flame_dir, tmp_path / "deca")
    obj = import_head(blender_scene, folder, n_shape=4, n_expression=2)
    got = mesh_corner_uvs(obj)
    assert got is not None, "the DECA folder's head_template.obj UVs were not used"
    assert np.abs(got - obj_corner_uvs(folder / "head_template.obj")).max() < 1e-6
    assert core.find_head_uvs(folder, np.asarray(core.load_flame(folder)["f"])).source == folder / "head_template.obj"
    assert apply_albedo(obj) == "FLAME_albedo_from_BFM.npz"


def test_template_without_uvs_is_skipped_and_the_albedo_refused(blender_scene, flame_dir, tmp_path):
    folder = deca_folder(flame_dir, tmp_path / "mica", template_with_uvs=False)
    found = core.find_head_uvs(folder, np.asarray(core.load_flame(folder)["f"]))
    assert found.corner_uvs is None
    assert any("head_template.obj" in note and "no UV" in note for note in found.notes)
    obj = import_head(blender_scene, folder, n_shape=4, n_expression=2)
    assert mesh_corner_uvs(obj) is None
    with pytest.raises(FlameParameterError, match="no albedo: the head has no UV map"):
        apply_albedo(obj)


def test_batch_records_no_albedo_for_a_head_without_uvs(flame_dir, tmp_path):
    folder = deca_folder(flame_dir, tmp_path / "mica", template_with_uvs=False)
    out = tmp_path / "out"
    command = [
        sys.executable, str(REPO_ROOT / "scripts" / "render_batch.py"), "--flame-dir", str(folder),
        "--out", str(out), "--num", "1", "--resolution", "32", "32", "--samples", "1",
        "--device", "CPU", "--no-denoise", "--landmarks", "ibug68",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no albedo" in result.stdout
    record = json.loads(next((out / "samples").glob("*.json")).read_text())
    assert record["albedo"]["model"] is None
    assert record["albedo"]["note"].startswith("no albedo: the head has no UV map")


def test_symlinked_model_reads_the_extras_beside_the_link(blender_scene, flame_dir, tmp_path):
    shared = tmp_path / "shared"
    shutil.copytree(flame_dir, shared)
    experiment = tmp_path / "experiment"
    experiment.mkdir()
    os.symlink(shared / "generic_model.pkl", experiment / "generic_model.pkl")
    # this folder's own extras: fewer masks, only the MediaPipe landmarks, no UVs
    masks = core.load_flame_masks(shared / "FLAME_masks.pkl")
    keep = {"face": masks["face"], "neck": masks["neck"]}
    from flame_blender.core.synthetic import pickle_writer

    (experiment / "FLAME_masks.pkl").write_bytes(pickle_writer.py2_pickle(pickle_writer.py2_key_dict(keep), protocol=0))
    shutil.copy(shared / "mediapipe_landmark_embedding.npz", experiment)

    model_path = experiment / "generic_model.pkl"
    assert core.FlameNumpy(model_path).landmarks.names == ["mediapipe"]
    obj = import_head(blender_scene, model_path, n_shape=4, n_expression=2)
    assert sorted(group.name for group in obj.vertex_groups) == ["face", "neck"]
    assert mesh_corner_uvs(obj) is None
    assert Path(obj.flame.model_path) == model_path
    # the target's folder, named directly, still reads its own
    other = import_head(blender_scene, shared / "generic_model.pkl", n_shape=4, n_expression=2)
    assert len(other.vertex_groups) == 14 and mesh_corner_uvs(other) is not None


def test_texture_drawn_for_other_uvs_is_refused(blender_scene, flame_dir, tmp_path):
    folder = tmp_path / "flame"
    folder.mkdir()
    for name in ("generic_model.pkl", "head_template_mesh.obj"):
        shutil.copy(flame_dir / name, folder / name)
    with np.load(flame_dir / "FLAME_texture.npz") as archive:
        arrays = {key: archive[key] for key in archive.files}
    arrays["vt"] = arrays["vt"][::-1].copy()  # the same coordinates, another numbering
    np.savez(folder / "FLAME_texture.npz", **arrays)
    obj = import_head(blender_scene, folder, n_shape=4, n_expression=2)
    texture = core.load_texture_model(folder / "FLAME_texture.npz")
    problem = core.albedo_problem(texture, mesh_corner_uvs(obj), len(obj.data.polygons))
    assert problem is not None and "UV layout" in problem
    with pytest.raises(FlameParameterError, match="differs from the head's UVs"):
        apply_albedo(obj)
    # the same texture with the head's own layout is accepted
    shutil.copy(flame_dir / "FLAME_texture.npz", folder / "FLAME_texture.npz")
    assert apply_albedo(obj) == "FLAME_texture.npz"
