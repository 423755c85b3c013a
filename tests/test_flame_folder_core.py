"""core.flame_folder without Blender: where extras are read, the head's UVs, the albedo check."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from flame_blender import core


def test_extras_are_read_beside_the_symlink(flame_dir: Path, tmp_path: Path) -> None:
    link_folder = tmp_path / "experiment"
    link_folder.mkdir()
    os.symlink(flame_dir / "generic_model.pkl", link_folder / "generic_model.pkl")
    shutil.copy(flame_dir / "mediapipe_landmark_embedding.npz", link_folder)
    assert core.extras_folder(link_folder / "generic_model.pkl") == link_folder
    assert core.extras_folder(link_folder) == link_folder
    relative = Path(os.path.relpath(link_folder / "generic_model.pkl"))
    assert core.absolute_path(relative) == link_folder / "generic_model.pkl"  # not the target
    assert core.FlameNumpy(link_folder / "generic_model.pkl").landmarks.names == ["mediapipe"]


def test_head_uvs_from_deca_template_or_texture_skipping_a_uv_less_obj(flame_dir: Path, tmp_path: Path) -> None:
    faces = np.asarray(core.load_flame(flame_dir)["f"], np.int64)
    folder = tmp_path / "deca"
    folder.mkdir()
    shutil.copy(flame_dir / "head_template_mesh.obj", folder / "head_template.obj")
    found = core.find_head_uvs(folder, faces)
    template = core.load_template_mesh(flame_dir / "head_template_mesh.obj")
    assert found.source == folder / "head_template.obj"
    assert np.abs(found.corner_uvs - template.uvs[template.uv_faces.reshape(-1)]).max() < 1e-6

    # MICA's head_template.obj: no vt lines, faces 'f a b c'
    lines = []
    for line in (flame_dir / "head_template_mesh.obj").read_text().splitlines():
        if line.startswith("vt "):
            continue
        if line.startswith("f "):
            line = "f " + " ".join(corner.split("/")[0] for corner in line.split()[1:])
        lines.append(line)
    (folder / "head_template.obj").write_text("\n".join(lines) + "\n")
    found = core.find_head_uvs(folder, faces)
    assert found.corner_uvs is None and "no UV coordinates" in found.notes[0]
    shutil.copy(flame_dir / "FLAME_texture.npz", folder)  # its vt/ft are used instead
    found = core.find_head_uvs(folder, faces)
    assert found.source == folder / "FLAME_texture.npz"
    assert np.abs(found.corner_uvs - template.uvs[template.uv_faces.reshape(-1)]).max() < 1e-6


def test_albedo_problem_compares_the_uv_layouts(flame_dir: Path) -> None:
    texture = core.load_texture_model(flame_dir / "FLAME_texture.npz")
    template = core.load_template_mesh(flame_dir / "head_template_mesh.obj")
    head_uvs = template.uvs[template.uv_faces.reshape(-1)]
    n_faces = len(template.faces)
    assert core.albedo_problem(texture, head_uvs, n_faces) is None
    assert core.albedo_problem(texture, None, n_faces).startswith("no albedo: the head has no UV map")
    shifted = head_uvs.copy()
    shifted[:30] += 0.01  # ten triangles' corners elsewhere
    problem = core.albedo_problem(texture, shifted, n_faces)
    assert problem is not None and "at 10 of" in problem
    bfm = core.load_texture_model(flame_dir / "FLAME_albedo_from_BFM.npz")
    assert core.albedo_problem(bfm, head_uvs, n_faces) is None  # drawn for the template's UVs
