"""scripts/export_head.py as a user runs it: a sequence file in, a GLB out, checked with the
spec-based numpy glTF reader against FLAME; bad input exits 2 and writes nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from gltf_numpy import Gltf

from flame_blender.core import FlameNumpy

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "export_head.py"


def run(*args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, BLENDER_USER_RESOURCES=str(tmp_path / "user"))
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)


def test_sequence_to_glb(flame_dir, tmp_path):
    rng = np.random.default_rng(1)
    count = 12
    arrays = {
        "shape": np.tile(rng.normal(size=20), (count, 1)),
        "expression": rng.normal(size=(count, 30)),
        "global_pose": rng.normal(scale=0.2, size=(count, 3)),
        "neck_pose": rng.normal(scale=0.2, size=(count, 3)),
        "jaw_pose": rng.normal(scale=0.2, size=(count, 3)),
        "eye_pose": rng.normal(scale=0.2, size=(count, 6)),
        "transl": rng.normal(scale=0.02, size=(count, 3)),
    }
    np.savez(tmp_path / "sequence.npz", **arrays)
    out = tmp_path / "head.glb"
    result = run("--flame-dir", str(flame_dir), "--sequence", str(tmp_path / "sequence.npz"),
                 "--n-expression", "30", "--fps", "30", "--out", str(out), tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    f32 = {k: v.astype(np.float32).astype(np.float64) for k, v in arrays.items()}
    reference = FlameNumpy(flame_dir, n_shape=20, n_expression=30)(
        shape_params=f32["shape"], expression_params=f32["expression"], global_pose=f32["global_pose"],
        neck_pose=f32["neck_pose"], jaw_pose=f32["jaw_pose"], eye_pose=f32["eye_pose"], transl=f32["transl"],
    )
    gltf = Gltf(out)
    times = gltf.animation_times()
    assert np.allclose(times, np.arange(1, count + 1) / 30.0, atol=1e-6)
    # The head stands in Blender (FLAME's y up -> Blender's z up), and glTF is y up again: glTF
    # coordinates are FLAME's. Vertices are matched by their bind-pose position.
    base = FlameNumpy(flame_dir, n_shape=20, n_expression=0)(shape_params=f32["shape"][0])
    rest = gltf.rest_positions()
    index = np.array([np.argmin(((base - p) ** 2).sum(1)) for p in rest])
    assert np.abs(base[index] - rest).max() < 1e-6
    errors = [np.abs(gltf.evaluate(t) - reference[i][index]).max() for i, t in enumerate(times)]
    assert max(errors) < 1e-4, max(errors)


def test_bad_input_exits_2(tmp_path):
    result = run("--sequence", str(tmp_path / "missing.npz"), "--out", str(tmp_path / "x.glb"), tmp_path=tmp_path)
    assert result.returncode == 2 and "missing.npz" in result.stderr
    result = run("--out", str(tmp_path / "no" / "x.glb"), tmp_path=tmp_path)
    assert result.returncode == 2 and "does not exist" in result.stderr
    assert not (tmp_path / "x.glb").exists()
