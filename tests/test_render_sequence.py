"""scripts/render_batch.py --sequence (subprocess under the bpy module): one sample per selected
frame, the tracker's camera (the sample's landmarks land where the file's own camera, scaled to
the render size, puts them), the overlay over source frames, and bad input refused."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from sequence_writers import fht_project, random_sequence, write_flame_head_tracker, write_vhap

from flame_blender.core.render.png import read_png, write_png

REPO_ROOT = Path(__file__).resolve().parent.parent
SCRIPT = REPO_ROOT / "scripts" / "render_batch.py"


def run(flame_dir: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    command = [sys.executable, str(SCRIPT), "--flame-dir", str(flame_dir), "--out", str(out), "--samples", "1",
               "--device", "CPU", "--landmarks", "ibug68", *extra]
    return subprocess.run(command, capture_output=True, text=True, timeout=600)


def test_sequence_renders_frames_with_the_tracked_camera_and_overlay(flame_dir, tmp_path):
    values = random_sequence(3, seed=11)
    cams = np.array([[0.1, 0.0, 0.0, 0.0, 0.0, 1.2], [0.2, -0.1, 0.05, 0.01, -0.01, 1.1], [0.0, 0.1, 0.1, 0.0, 0.02, 1.0]])
    folder = write_flame_head_tracker(tmp_path / "tracked", values, cams, focal=560.0, size=256, frame_ids=[0, 1, 2])
    frames_dir = tmp_path / "frames"
    frames_dir.mkdir()
    for fid in range(3):
        write_png(frames_dir / f"frame_{fid:04d}.png", np.full((256, 256, 3), 40 * (fid + 1), np.uint8))
    out = tmp_path / "out"
    result = run(flame_dir, out, "--sequence", str(folder), "--frames", "1:2", "--resolution", "64", "64",
                 "--overlay", str(frames_dir))
    assert result.returncode == 0, result.stdout + result.stderr
    records = [json.loads((out / "samples" / f"00000{i}.json").read_text()) for i in range(2)]
    assert [r["frame_id"] for r in records] == [1, 2]
    k = np.array([[560.0, 0, 128.0], [0, 560.0, 128.0], [0, 0, 1]])
    for record in records:
        fid = record["frame_id"]
        scaled = k * np.array([[0.25], [0.25], [1.0]])
        np.testing.assert_allclose(np.array(record["camera"]["K"]), scaled, atol=1e-3)
        ibug = record["landmarks"]["ibug68"]
        expected = fht_project(np.array(ibug["points_3d"]), cams[fid].astype(np.float32).astype(np.float64), k, 256) * 0.25
        assert np.abs(np.array(ibug["points_2d"]) - expected).max() < 0.01
        overlay = read_png(out / "samples" / f"{record['id']}.overlay.png")
        assert overlay.shape == (64, 64, 3)
        assert tuple(overlay[0, 0]) == (40 * (fid + 1),) * 3  # background: the source frame
        u, v = np.array(ibug["points_2d"]).mean(0).astype(int)
        assert overlay[v, u].tolist() != [40 * (fid + 1)] * 3  # the head covers its landmarks
    again = run(flame_dir, out, "--sequence", str(folder), "--frames", "1:2", "--resolution", "64", "64",
                "--overlay", str(frames_dir))
    assert again.returncode == 0 and "2 already done" in again.stdout


def test_bad_sequence_input_is_refused_before_writing(flame_dir, tmp_path):
    path = write_vhap(tmp_path / "tracked_flame_params.npz", random_sequence(2), ["0", "1"])
    out = tmp_path / "out"
    result = run(flame_dir, out, "--sequence", str(path), "--resolution", "32", "32")
    assert result.returncode == 2 and "--camera tracked" in result.stderr
    assert not (out / "run.json").exists()
    result = run(flame_dir, out, "--sequence", str(path), "--camera", "studio", "--frames", "5:9", "--resolution", "32", "32")
    assert result.returncode == 2 and "no frame" in result.stderr
