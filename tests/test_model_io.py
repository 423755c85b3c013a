"""FLAME model pickles and masks: values round-trip, every bad input names file and problem."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from file_errors import assert_file_error
from io_fakes import (
    FakeCh,
    FakeCsc,
    FakeCscNew,
    as_py2_file,
    dumps,
    reference_model,
    tiny_model,
    write_pickle,
)

from flame_blender.core.errors import FlameFileError
from flame_blender.core.io.model_io import find_flame_model_file, load_flame, load_flame_masks

ARRAY_KEYS = ("v_template", "shapedirs", "posedirs", "weights", "J_regressor", "J")


def _assert_model_equal(loaded: dict, model: dict) -> None:
    for key in ARRAY_KEYS:
        assert loaded[key].dtype == np.float64, key
        assert np.array_equal(loaded[key], np.asarray(model[key], dtype=np.float64)), key
    assert loaded["f"].dtype == model["f"].dtype and np.array_equal(loaded["f"], model["f"])
    assert loaded["kintree_table"].dtype == np.int64
    assert np.array_equal(loaded["kintree_table"], model["kintree_table"])
    assert loaded["bs_style"] == "lbs" and loaded["bs_type"] == "lrotmin"


# --- the synthetic FLAME folder (written in the real files' formats) ---------------------------


@pytest.mark.parametrize("name", ["generic_model.pkl", "flame2023.pkl"])
def test_synthetic_model_files_round_trip_exactly(flame_dir: Path, name: str) -> None:
    from flame_blender.core.synthetic import synthetic_flame_model

    expected = synthetic_flame_model(0)
    loaded = load_flame(flame_dir / name)
    assert loaded["v_template"].shape == (5023, 3)
    assert loaded["f"].shape == (9976, 3) and loaded["f"].dtype == np.uint32
    assert loaded["shapedirs"].shape == (5023, 3, 400)
    assert loaded["posedirs"].shape == (5023, 3, 36)
    assert loaded["J_regressor"].shape == (5, 5023)
    assert set(loaded) == set(expected)
    for key, value in expected.items():
        if isinstance(value, str):
            assert loaded[key] == value, key
        else:
            assert loaded[key].dtype == value.dtype, key
            assert np.array_equal(loaded[key], value), key


@pytest.mark.parametrize("name", ["generic_model.pkl", "flame2023.pkl", "flame2023_no_jaw.pkl"])
def test_synthetic_model_files_match_an_independent_read(flame_dir: Path, name: str) -> None:
    """Against the stock unpickler (numpy resolved normally, chumpy/scipy as plain holders, the
    sparse matrix densified by a loop): the file's own values, whatever the generator put in."""
    reference = reference_model(flame_dir / name)
    loaded = load_flame(flame_dir / name)
    assert list(reference) == ["f", "J_regressor", "kintree_table", "J", "bs_style", "weights",
                               "posedirs", "v_template", "shapedirs", "bs_type"]  # fmt: skip
    for key, value in reference.items():
        if isinstance(value, str):
            assert loaded[key] == value, key
        else:
            assert np.array_equal(loaded[key], value), key
    if name == "flame2023_no_jaw.pkl":  # nothing follows the jaw joint
        assert np.all(loaded["weights"][:, 2] == 0)
        assert np.allclose(loaded["weights"].sum(axis=1), 1.0)


def test_synthetic_folder_picks_flame2023_first(flame_dir: Path) -> None:
    assert find_flame_model_file(flame_dir) == flame_dir / "flame2023.pkl"
    folder_model = load_flame(flame_dir)
    file_model = load_flame(flame_dir / "flame2023.pkl")
    assert all(np.array_equal(folder_model[k], file_model[k]) for k in ARRAY_KEYS)


def test_synthetic_model_pickle_uses_the_real_foreign_classes(flame_dir: Path) -> None:
    data = (flame_dir / "generic_model.pkl").read_bytes()
    assert data[:2] == b"\x80\x02"  # protocol 2
    assert b"cchumpy.ch\nCh\n" in data
    assert b"cscipy.sparse.csc\ncsc_matrix\n" in data


def test_synthetic_masks_values(flame_dir: Path) -> None:
    masks = load_flame_masks(flame_dir)
    names = ["eye_region", "neck", "left_eyeball", "right_eyeball", "right_ear",
             "right_eye_region", "forehead", "lips", "nose", "scalp", "boundary", "face",
             "left_ear", "left_eye_region"]  # fmt: skip
    assert list(masks) == names
    assert all(m.dtype == np.int64 and m.ndim == 1 for m in masks.values())
    assert np.array_equal(masks["left_eyeball"], np.arange(3931, 4477))
    assert np.array_equal(masks["right_eyeball"], np.arange(4477, 5023))
    lips = masks["lips"]
    assert len(lips) - len(np.unique(lips)) == 4 and not np.all(np.diff(lips) > 0)
    for name, mask in masks.items():
        if name != "lips":
            assert np.all(np.diff(mask) > 0), name
        assert mask.min() >= 0 and mask.max() < 5023


def test_synthetic_masks_match_what_the_generator_wrote(flame_dir: Path) -> None:
    import pickle

    # the reference read uses plain pickle: these files are our own, written by the generator
    with open(flame_dir / "FLAME_masks.pkl", "rb") as handle:
        written = pickle.load(handle, encoding="latin1")
    masks = load_flame_masks(flame_dir / "FLAME_masks.pkl")
    assert list(masks) == list(written)
    for name in written:
        assert np.array_equal(masks[name], written[name]), name


# --- hand-made files: every storage style of the real ones ------------------------------------


def test_py2_protocol2_model_with_chumpy_and_csc(tmp_path: Path) -> None:
    model = tiny_model()
    path = write_pickle(tmp_path / "generic_model.pkl", as_py2_file(model))
    _assert_model_equal(load_flame(path), model)


@pytest.mark.parametrize("frombuffer", ["numpy._core.numeric", "numpy.core.numeric"])
@pytest.mark.parametrize("protocol", [4, 5])
def test_flame_2023_open_python3_pickle(tmp_path: Path, frombuffer: str, protocol: int) -> None:
    """FLAME 2023 Open: a Python 3 pickle of plain arrays (``_frombuffer``) and
    ``scipy.sparse._csc.csc_matrix``, under a file name the loader has to discover."""
    model = tiny_model(seed=3)
    stored = dict(model, J_regressor=FakeCscNew(model["J_regressor"]))
    data = dumps(stored, protocol=protocol, py2=False, frombuffer=frombuffer)
    assert f"{frombuffer}\n_frombuffer".encode() in data
    assert b"scipy.sparse._csc\ncsc_matrix" in data
    (tmp_path / "FLAME_masks.pkl").write_bytes(dumps({"neck": np.arange(3)}))
    (tmp_path / "flame2023_open.pkl").write_bytes(data)
    assert find_flame_model_file(tmp_path) == tmp_path / "flame2023_open.pkl"
    _assert_model_equal(load_flame(tmp_path), model)


def test_chumpy_accepted_in_place_of_every_array(tmp_path: Path) -> None:
    model = tiny_model(seed=4)
    stored = {
        key: FakeCh(value) if isinstance(value, np.ndarray) else value
        for key, value in model.items()
    }
    _assert_model_equal(load_flame(write_pickle(tmp_path / "m.pkl", stored)), model)


def test_chumpy_holding_a_list(tmp_path: Path) -> None:
    model = tiny_model(seed=6)
    stored = as_py2_file(model)
    stored["kintree_table"] = FakeCh(model["kintree_table"].tolist())
    loaded = load_flame(write_pickle(tmp_path / "m.pkl", stored))
    assert loaded["kintree_table"].dtype == np.int64
    assert np.array_equal(loaded["kintree_table"], model["kintree_table"])


def test_optional_keys_get_flame_defaults(tmp_path: Path) -> None:
    model = tiny_model(seed=5)
    stored = {k: v for k, v in model.items() if k not in ("J", "kintree_table", "bs_style")}
    loaded = load_flame(write_pickle(tmp_path / "m.pkl", stored, protocol=4, py2=False))
    assert np.allclose(loaded["J"], model["J_regressor"] @ model["v_template"])
    assert np.array_equal(loaded["kintree_table"], model["kintree_table"])
    assert loaded["bs_style"] == "lbs"


def test_folder_order(tmp_path: Path) -> None:
    names = ["flame2023_no_jaw.pkl", "generic_model.pkl", "flame2023.pkl"]
    for seed, name in enumerate(names):
        write_pickle(tmp_path / name, as_py2_file(tiny_model(seed=seed)))
        assert find_flame_model_file(tmp_path) == tmp_path / name
        _assert_model_equal(load_flame(tmp_path), tiny_model(seed=seed))


def test_masks_keep_file_order_and_duplicates(tmp_path: Path) -> None:
    masks = {
        "scalp": np.array([5, 6, 7]),
        "lips": np.array([9, 2, 2, 4, 9]),
        "boundary": np.array([0, 1], dtype=np.int32),
    }
    path = write_pickle(tmp_path / "FLAME_masks.pkl", masks, protocol=0)
    assert path.read_bytes().startswith(b"(dp0\nS'scalp'")  # Python 2 protocol 0, as the real one
    loaded = load_flame_masks(tmp_path)
    assert list(loaded) == ["scalp", "lips", "boundary"]
    for name, mask in masks.items():
        assert loaded[name].dtype == np.int64 and np.array_equal(loaded[name], mask)


# --- bad inputs -------------------------------------------------------------------------------


def _with(**changes: object) -> dict:
    model = as_py2_file(tiny_model())
    for key, value in changes.items():
        if value is None:
            del model[key]
        else:
            model[key] = value
    return model


V = 12
BAD_MODELS = {
    "missing_key": (_with(shapedirs=None), ["'shapedirs'", "no key"]),
    "not_a_dict": ([1, 2, 3], ["holds a list", "expected a dict"]),
    "shapedirs_shape": (_with(shapedirs=FakeCh(np.zeros((V, 4)))), ["'shapedirs'", f"({V}, 3, N)"]),
    "shapedirs_vertices": (_with(shapedirs=np.zeros((V + 1, 3, 4))), ["'shapedirs'", f"({V + 1}, 3, 4)"]),
    "posedirs_shape": (_with(posedirs=np.zeros((V, 3, 35))), ["'posedirs'", f"({V}, 3, 36)"]),
    "weights_shape": (_with(weights=np.zeros((V, 4))), ["'weights'", f"({V}, 5)"]),
    "regressor_shape": (_with(J_regressor=FakeCsc(np.ones((4, V)))), ["'J_regressor'", f"(5, {V})"]),
    "regressor_dense_shape": (_with(J_regressor=np.ones((V, 5))), ["'J_regressor'", f"(5, {V})"]),
    "v_template_shape": (_with(v_template=np.zeros((V, 2))), ["'v_template'", "(V, 3)"]),
    "J_shape": (_with(J=np.zeros((4, 3))), ["'J'", "(5, 3)"]),
    "kintree_shape": (_with(kintree_table=np.zeros((2, 4), dtype=np.int64)), ["'kintree_table'", "(2, 5)"]),
    "faces_dtype": (_with(f=np.zeros((4, 3), dtype=np.float64)), ["'f'", "float64", "integers"]),
    "template_dtype": (_with(v_template=np.full((V, 3), "a")), ["'v_template'", "numbers"]),
    "faces_shape": (_with(f=np.zeros((4, 4), dtype=np.uint32)), ["'f'", "(F, 3)"]),
    "faces_out_of_range": (_with(f=np.array([[0, 1, V]], dtype=np.uint32)), ["'f'", "out of range", f"0..{V - 1}"]),
    "faces_negative": (_with(f=np.array([[0, -1, 2]], dtype=np.int64)), ["'f'", "out of range"]),
    "nan_template": (_with(v_template=np.full((V, 3), np.nan)), ["'v_template'", "NaN"]),
    "inf_shapedirs": (_with(shapedirs=FakeCh(np.full((V, 3, 4), np.inf))), ["'shapedirs'", "NaN/inf"]),
    "nan_weights": (_with(weights=np.full((V, 5), np.nan)), ["'weights'", "NaN"]),
    "chumpy_without_value": (_with(shapedirs=FakeCh(None)), ["'shapedirs'", "without a stored value"]),
    "string_array": (_with(posedirs="posedirs"), ["'posedirs'", "is a str"]),
    "bs_style_type": (_with(bs_style=np.zeros(2)), ["'bs_style'", "string"]),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD_MODELS))
def test_bad_model_content(tmp_path: Path, case: str) -> None:
    content, words = BAD_MODELS[case]
    path = write_pickle(tmp_path / "generic_model.pkl", content)
    assert_file_error(lambda: load_flame(tmp_path), path, words)


def test_broken_sparse_regressor(tmp_path: Path) -> None:
    matrix = FakeCsc(np.ones((5, V)))
    matrix.state["indptr"] = matrix.state["indptr"][:-2]
    path = write_pickle(tmp_path / "generic_model.pkl", _with(J_regressor=matrix))
    with pytest.raises(FlameFileError, match="'J_regressor'.*indptr") as caught:
        load_flame(path)
    assert str(path) in str(caught.value)


@pytest.mark.parametrize(
    "setup, words",
    [
        ("missing_file", ["no such file or folder"]),
        ("missing_folder", ["no such file or folder"]),
        ("empty_folder", ["holds no FLAME model", "generic_model.pkl"]),
        ("folder_with_other_pickles", ["holds no FLAME model", "notes.pkl", "no key"]),
        ("folder_with_broken_pickle", ["holds no FLAME model", "junk.pkl", "not a readable pickle"]),
        ("not_a_pickle", ["not a readable pickle"]),
        ("truncated", ["truncated"]),
        ("empty_file", ["empty"]),
        ("npz_instead", ["not a readable pickle"]),
    ],
)  # fmt: skip
def test_bad_model_files(tmp_path: Path, setup: str, words: list[str]) -> None:
    data = dumps(as_py2_file(tiny_model()))
    target = tmp_path / "generic_model.pkl"
    if setup == "missing_file":
        target = tmp_path / "nothing_here.pkl"
    elif setup == "missing_folder":
        target = tmp_path / "no_folder"
    elif setup == "empty_folder":
        target = tmp_path
    elif setup == "folder_with_other_pickles":
        write_pickle(tmp_path / "notes.pkl", {"a": 1})
        target = tmp_path
    elif setup == "folder_with_broken_pickle":
        (tmp_path / "junk.pkl").write_bytes(b"hello")
        target = tmp_path
    elif setup == "not_a_pickle":
        target.write_text("v 0 0 0\nf 1 2 3\n")
    elif setup == "truncated":
        target.write_bytes(data[: len(data) - 100])
    elif setup == "empty_file":
        target.write_bytes(b"")
    elif setup == "npz_instead":
        np.savez(tmp_path / "x.npz", a=np.zeros(3))
        target.write_bytes((tmp_path / "x.npz").read_bytes())
    assert_file_error(lambda: load_flame(target), target, words)


@pytest.mark.parametrize(
    "content, words",
    [
        ([1, 2], ["holds a list"]),
        ({"lips": np.zeros((2, 2), dtype=np.int64)}, ["'lips'", "1-D"]),
        ({"lips": np.array([0.5, 1.0])}, ["'lips'", "integers"]),
        ({"lips": np.array([-1, 3])}, ["'lips'", "negative"]),
    ],
)
def test_bad_masks(tmp_path: Path, content: object, words: list[str]) -> None:
    path = write_pickle(tmp_path / "FLAME_masks.pkl", content, protocol=0)
    assert_file_error(lambda: load_flame_masks(path), path, words)


def test_masks_missing(tmp_path: Path) -> None:
    with pytest.raises(FlameFileError, match="FLAME_masks.pkl") as caught:
        load_flame_masks(tmp_path)
    assert str(tmp_path) in str(caught.value)
