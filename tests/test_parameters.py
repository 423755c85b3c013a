"""Parameter sets: files round-trip exactly, bad files fail with messages naming them."""

from __future__ import annotations

import json

import numpy as np
import pytest

from flame_blender.core.errors import FlameFileError, FlameParameterError
from flame_blender.core.model.parameters import (
    PARAMETER_NAMES,
    FlameParameters,
    load_parameter_sequence,
    load_parameters,
    save_parameters,
)


def _random(seed: int = 3) -> FlameParameters:
    return FlameParameters.random(np.random.default_rng(seed), 300, 100)


@pytest.mark.parametrize("suffix", [".json", ".npz"])
def test_save_then_load_round_trips_exactly(tmp_path, suffix):
    params = _random()
    path = save_parameters(params, tmp_path / f"head{suffix}")
    loaded = load_parameters(path)
    for name in PARAMETER_NAMES:
        np.testing.assert_array_equal(getattr(loaded, name), getattr(params, name))
    assert not list(tmp_path.glob(".*.tmp")), "temporary file left behind"


def test_missing_keys_are_zeros_and_counts_follow_the_file(tmp_path):
    path = tmp_path / "jaw.json"
    path.write_text(json.dumps({"jaw_pose": [0.3, 0, 0], "expression": [1.0, -2.0]}))
    params = load_parameters(path)
    assert params.n_shape == 0 and params.n_expression == 2
    np.testing.assert_array_equal(params.jaw_pose, [0.3, 0, 0])
    np.testing.assert_array_equal(params.eye_pose, np.zeros(6))
    resized = params.resized(300, 100)
    assert resized.shape.shape == (300,) and resized.expression[:2].tolist() == [1.0, -2.0]


def test_random_is_deterministic_and_groups_switch_off():
    a, b = _random(7), _random(7)
    assert a.allclose(b)
    assert not a.allclose(_random(8))
    only_shape = FlameParameters.random(np.random.default_rng(7), 300, 100, groups=("shape",))
    np.testing.assert_array_equal(only_shape.shape, a.shape)
    assert not only_shape.expression.any() and not only_shape.jaw_pose.any()
    assert np.abs(a.shape).max() <= 3.0


def test_sequence_from_jsonl_and_npz_agree(tmp_path):
    heads = [_random(seed) for seed in range(3)]
    jsonl = tmp_path / "seq.jsonl"
    jsonl.write_text("".join(json.dumps(h.to_dict()) + "\n" for h in heads) + "\n")
    npz = tmp_path / "seq.npz"
    np.savez(npz, **{n: np.stack([getattr(h, n) for h in heads]) for n in PARAMETER_NAMES})
    for loaded in (load_parameter_sequence(jsonl), load_parameter_sequence(npz)):
        assert len(loaded) == 3
        assert all(x.allclose(h) for x, h in zip(loaded, heads, strict=True))


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("bad.json", "{not json", "not valid JSON"),
        ("bad.jsonl", '{"jaw_pose": [0, 0, 0]}\n[1, 2\n', "line 2 is not valid JSON"),
        ("keys.json", '{"jaw": [0, 0, 0]}', "unknown parameter keys ['jaw']"),
        ("size.json", '{"jaw_pose": [0, 0]}', "jaw_pose: expected 3 values"),
        ("nan.json", '{"shape": [NaN]}', "finite"),
        ("text.json", '{"shape": ["a"]}', "shape: expected a list of numbers"),
        ("list.json", "[1, 2]", "expected an object"),
        ("head.txt", "{}", "expected .json or .npz"),
        ("junk.npz", "not a zip", "is not an .npz archive"),
    ],
)
def test_bad_files_name_the_file_and_the_problem(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content)
    loader = load_parameter_sequence if name.endswith(("l", ".npz")) else load_parameters
    with pytest.raises(FlameFileError) as error:
        loader(path)
    assert str(path) in str(error.value)
    assert message in str(error.value)


def test_npz_sequence_with_mismatched_lengths_is_refused(tmp_path):
    path = tmp_path / "seq.npz"
    np.savez(path, shape=np.zeros((3, 10)), jaw_pose=np.zeros((2, 3)))
    with pytest.raises(FlameFileError, match="disagree on the number of samples"):
        load_parameter_sequence(path)


def test_constructor_rejects_wrong_pose_sizes():
    with pytest.raises(FlameParameterError, match="eye_pose: expected 6 values"):
        FlameParameters(np.zeros(1), np.zeros(1), np.zeros(3), np.zeros(3), np.zeros(3), np.zeros(3), np.zeros(3))


def test_save_into_missing_folder_fails_cleanly(tmp_path):
    with pytest.raises(FlameFileError, match="cannot write parameters"):
        save_parameters(_random(), tmp_path / "nope" / "head.json")
