"""A hostile file picked in File > Import (``flame.import_head``) in the real Blender: the
operator reports an error, nothing is added to the file, and Blender goes on working."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from hostile_files import HOSTILE, zip_bomb

bpy = pytest.importorskip("bpy")

PICKLE_CASES = [
    ("memory corruption", "structured_dtype_hidden_object"),
    ("memory corruption", "reconstruct_object_array_from_bytes"),
    ("memory corruption", "ndarray_call_with_buffer"),
    ("resource bomb", "memo_bomb"),
    ("resource bomb", "array_shape_bomb"),
    ("resource bomb", "nested_tuple_dict_key"),
    ("state tampering", "build_on_allowed_function"),
    ("state tampering", "build_twice_on_one_record"),
]


def data_counts() -> dict[str, int]:
    return {name: len(getattr(bpy.data, name))
            for name in ("objects", "meshes", "materials", "shape_keys", "images")}  # fmt: skip


def _import_fails(path: Path) -> str:
    before = data_counts()
    with pytest.raises(RuntimeError) as error:
        bpy.ops.flame.import_head(filepath=str(path))
    assert data_counts() == before
    message = str(error.value)
    assert "FLAME import failed" in message
    return message


@pytest.mark.parametrize("group, name", PICKLE_CASES, ids=[n for _, n in PICKLE_CASES])
def test_hostile_model_file(blender_scene, tmp_path: Path, group: str, name: str) -> None:
    _reader, _file_name, data = HOSTILE[group][name](tmp_path)
    path = tmp_path / "generic_model.pkl"
    path.write_bytes(data)
    assert "generic_model.pkl" in _import_fails(path)


@pytest.mark.parametrize("beside", ["masks", "texture_zip_bomb", "template_obj"])
def test_hostile_file_beside_a_good_model(blender_scene, flame_dir: Path, tmp_path: Path,
                                          beside: str) -> None:  # fmt: skip
    # a hard link, not a symlink: the import resolves links and reads extras beside the target
    try:
        os.link(flame_dir / "generic_model.pkl", tmp_path / "generic_model.pkl")
    except OSError:
        shutil.copy(flame_dir / "generic_model.pkl", tmp_path / "generic_model.pkl")
    if beside == "masks":
        _r, _n, data = HOSTILE["memory corruption"]["one_byte_dtype_code_in_masks"](flame_dir)
        (tmp_path / "FLAME_masks.pkl").write_bytes(data)
        expected = "FLAME_masks.pkl"
    elif beside == "texture_zip_bomb":  # read for its UVs when there is no template OBJ
        _r, _n, data = zip_bomb(tmp_path)
        (tmp_path / "FLAME_texture.npz").write_bytes(data)
        expected = "FLAME_texture.npz"
    else:
        # with a UV line, so the import reads it for its UVs (a UV-less OBJ is skipped by design)
        obj = "v 0 0 0\nvt 0 0\nf 1/1 2/1 " + "9" * 5000 + "/1\n"
        (tmp_path / "head_template_mesh.obj").write_text(obj)
        expected = "head_template_mesh.obj"
    assert expected in _import_fails(tmp_path)


def test_blender_goes_on_after_hostile_files(blender_scene, flame_dir: Path, tmp_path: Path) -> None:
    for group, name in PICKLE_CASES:
        path = tmp_path / f"{name}.pkl"
        path.write_bytes(HOSTILE[group][name](tmp_path)[2])
        _import_fails(path)
    result = bpy.ops.flame.import_head(filepath=str(flame_dir), n_shape=2, n_expression=2)
    assert result == {"FINISHED"} and bpy.context.active_object.flame.is_head
