"""Fuzzing with fixed seeds: byte flips and truncations of every kind of synthetic file.

Each reader gets its own child process (``fuzz_runner.py``, under the hostile-file runner's
address-space limit) and several hundred damaged copies of a file in the synthetic set's
format. Only ``FlameFileError`` may come out: no other exception, no crash (exit status), no
hang (timeout), no single read over 2 s. The big files are fuzzed in small editions written by
the same writers (a 12-vertex model through the synthetic model writer, 8x8 textures), so the
whole test stays well under a minute.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from io_fakes import tiny_model

from flame_blender.core.synthetic import files as synthetic_files
from flame_blender.core.synthetic.textures import albedo_mm, bfm_albedo, flame_texture

RUNNER = Path(__file__).with_name("fuzz_runner.py")
FLIPS, TRUNCATIONS, SEED = 240, 80, 8


def _small_files(flame_dir: Path, out: Path) -> dict[str, tuple[str, Path]]:
    """reader -> (reader key, file) for every format of the synthetic set."""
    out.mkdir(parents=True, exist_ok=True)
    for name in ("FLAME_masks.pkl", "flame_static_embedding_68.pkl", "flame_dynamic_embedding.npy",
                 "landmark_embedding.npy", "mediapipe_landmark_embedding.npz"):  # fmt: skip
        shutil.copy(flame_dir / name, out / name)
    model = tiny_model(n_vertices=12, n_components=6)
    (out / "generic_model.pkl").write_bytes(synthetic_files.model_pickle_bytes(model))
    rng = np.random.default_rng(0)
    uv = {"vt": rng.random((20, 2)), "ft": rng.integers(0, 20, (24, 3)).astype(np.int64)}
    synthetic_files._save_npz(out / "FLAME_texture.npz", {**flame_texture(8, rng), **uv})
    synthetic_files._save_npz(out / "albedoModel2020_FLAME_albedoPart.npz", {**albedo_mm(8, rng), **uv})
    synthetic_files._save_npz(out / "FLAME_albedo_from_BFM.npz", bfm_albedo(8, rng))
    faces = model["f"].astype(np.int64)
    (out / "head_template_mesh.obj").write_text(synthetic_files.template_obj_text(
        model["v_template"], uv["vt"], faces, uv["ft"][: len(faces)]))  # fmt: skip
    from test_other_tools_files import trimesh_ply

    (out / "template.ply").write_bytes(trimesh_ply(model["v_template"], faces, binary=True))
    # a parameter sequence the way a user's script saves one (np.savez, leading sample axis)
    np.savez(out / "sequence.npz", shape=rng.standard_normal((3, 10)),
             jaw_pose=rng.standard_normal((3, 3)), eye_pose=np.zeros((3, 6)))  # fmt: skip
    sequences = _sequence_files(out)
    return {
        **sequences,
        "parameter_sequence": ("parameter sequence", out / "sequence.npz"),
        "model": ("model", out / "generic_model.pkl"),
        "masks": ("masks", out / "FLAME_masks.pkl"),
        "static": ("static", out / "flame_static_embedding_68.pkl"),
        "dynamic": ("dynamic", out / "flame_dynamic_embedding.npy"),
        "deca": ("deca", out / "landmark_embedding.npy"),
        "mediapipe": ("mediapipe", out / "mediapipe_landmark_embedding.npz"),
        "flame_texture": ("texture", out / "FLAME_texture.npz"),
        "albedomm": ("texture", out / "albedoModel2020_FLAME_albedoPart.npz"),
        "bfm_albedo": ("texture", out / "FLAME_albedo_from_BFM.npz"),
        "template_obj": ("obj", out / "head_template_mesh.obj"),
        "template_ply": ("ply", out / "template.ply"),
    }


def _sequence_files(out: Path) -> dict[str, tuple[str, Path]]:
    """Tracker files as their writers write them: a DECA code dict through ``torch.save``, a
    metrical-tracker ``.frame`` and a VHAP npz (tests/sequence_writers.py)."""
    import torch
    from sequence_writers import random_sequence, rodrigues, write_metrical_frames, write_vhap

    codes = {"shape": torch.randn(2, 100), "exp": torch.randn(2, 50), "pose": torch.randn(2, 6),
             "cam": torch.randn(2, 3), "light": torch.randn(2, 9, 3).transpose(1, 2),
             "frame": torch.arange(2)}  # fmt: skip
    torch.save(codes, out / "codes.pt")
    values = random_sequence(1, n_shape=20, n_expression=10, seed=3)
    values["eyelids"] = np.zeros((1, 2), np.float32)
    camera = (rodrigues(np.array([0.1, 0.2, 0.0])), np.array([0.0, 0.0, 1.0]), np.eye(3))
    write_metrical_frames(out / "checkpoint", values, [camera], [0])
    values = random_sequence(2, n_shape=20, n_expression=10, seed=4)
    write_vhap(out / "tracked_flame_params.npz", values, ["00000", "00003"])
    return {
        "torch_codes": ("torch", out / "codes.pt"),
        "sequence_codes_pt": ("sequence", out / "codes.pt"),
        "metrical_frame": ("sequence", out / "checkpoint" / "00000.frame"),
        "vhap_npz": ("sequence", out / "tracked_flame_params.npz"),
    }


# cases whose damage goes into one zip member (its CRC made right again), not the whole file
MEMBER_CASES = {"torch_codes_pickle": ("torch_codes", "data.pkl"),
                "metrical_frame_pickle": ("metrical_frame", "data.pkl")}  # fmt: skip
CASES = ["torch_codes", "sequence_codes_pt", "metrical_frame", "vhap_npz", *MEMBER_CASES,
         "model", "masks", "static", "dynamic", "deca", "mediapipe", "flame_texture", "albedomm",
         "bfm_albedo", "template_obj", "template_ply", "parameter_sequence"]  # fmt: skip


@pytest.fixture(scope="module")
def small_files(flame_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    return _small_files(flame_dir, tmp_path_factory.mktemp("fuzz-sources"))


@pytest.mark.parametrize("case", CASES)
def test_damaged_files_only_raise_flame_file_error(small_files: dict, tmp_path: Path, case: str) -> None:
    source_case, member = MEMBER_CASES.get(case, (case, None))
    reader, source = small_files[source_case]
    from reader_table import READERS  # not hostile_runner: that limits its own process

    assert READERS[reader](source) is not None  # the undamaged file loads
    done = subprocess.run(
        [sys.executable, str(RUNNER), reader, str(source), str(SEED), str(FLIPS),
         str(TRUNCATIONS), str(tmp_path), *([member] if member else [])],
        capture_output=True, text=True, timeout=120, cwd=RUNNER.parent,
    )  # fmt: skip
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["other"] == [], summary["other"][:10]
    assert summary["loaded"] + summary["refused"] == FLIPS + TRUNCATIONS
    assert summary["refused"] >= TRUNCATIONS // 2  # most cuts must be noticed
    assert summary["slowest"] <= 2.0, summary
