"""scripts/render_batch.py, run as a subprocess under the bpy module: ground truth consistency,
resume after a kill, failing samples, bad input, and shard determinism. Renders are tiny."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from flame_blender.core.render.camera import camera2pixel
from flame_blender.core.render.exr import read_exr
from flame_blender.core.render.manifest import read_manifest
from flame_blender.core.render.png import read_png
from flame_blender.core.render.segmentation import LABELS

REPO_ROOT = Path(__file__).resolve().parent.parent
SCRIPT = REPO_ROOT / "scripts" / "render_batch.py"
WIDTH, HEIGHT = 96, 80  # not square: catches swapped axes
COUNT = 3
IBUG_EYES = list(range(36, 48))  # 0-based iBUG-68 eye landmarks (eyelid margins)


def batch_command(flame_dir: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable, str(SCRIPT), "--flame-dir", str(flame_dir), "--out", str(out),
        "--resolution", str(WIDTH), str(HEIGHT), "--samples", "2", "--device", "CPU",
        "--landmarks", "ibug68", "mediapipe", *extra,
    ]


def run_batch(flame_dir: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        batch_command(flame_dir, out, *extra), capture_output=True, text=True, timeout=300
    )


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def full_run(flame_dir, tmp_path_factory):
    """One uninterrupted run of COUNT samples (with a contact sheet)."""
    out = tmp_path_factory.mktemp("full")
    sheet = out / "sheet.png"
    result = run_batch(flame_dir, out, "--num", str(COUNT), "--seed", "3", "--contact-sheet", str(sheet))
    assert result.returncode == 0, result.stdout + result.stderr
    return out, result


def surface_distances(depth, normals, intrinsics, point):
    """How far ``point`` (camera axes) is from the surface seen at each of the four pixel centres
    around its projection, along its camera ray: from the pixel's depth and, unless the ray
    grazes it, its tangent plane (metres; inf where no surface)."""
    fx, fy, cx, cy = intrinsics
    x, y = fx * point[0] / point[2] + cx, fy * point[1] / point[2] + cy
    left, top = int(np.floor(x - 0.5)), int(np.floor(y - 0.5))
    out = []
    for row, column in ((top, left), (top, left + 1), (top + 1, left), (top + 1, left + 1)):
        if not (0 <= row < depth.shape[0] and 0 <= column < depth.shape[1]) or depth[row, column] <= 0:
            out.append(np.inf)
            continue
        z = depth[row, column]
        centre = np.array([(column + 0.5 - cx) / fx * z, (row + 0.5 - cy) / fy * z, z])
        n = normals[row, column]
        out.append(abs(z - point[2]))  # the pixel's own depth
        if abs(n @ point) > 0.15 * np.linalg.norm(point):  # its tangent plane, unless grazing
            out.append(point[2] * abs(n @ (centre - point)) / abs(n @ point))
    return np.array(out)


def test_every_sample_is_written_with_its_manifest_and_progress(full_run):
    out, result = full_run
    records = read_manifest(out / "index.jsonl")
    assert [r["status"] for r in records] == ["ok"] * COUNT
    for record in records:
        for relative in record["files"].values():
            assert (out / relative).is_file()
    rgb = read_png(out / records[0]["files"]["rgb"])
    assert rgb.shape == (HEIGHT, WIDTH, 4)
    assert "samples/s" in result.stdout and "ETA" in result.stdout
    assert "CPU" in result.stdout
    assert json.loads((out / "labels.json").read_text())[0]["name"] == "background"
    sheet = read_png(out / "sheet.png")
    assert sheet.shape[0] > HEIGHT and sheet.shape[1] > 3 * WIDTH


def test_ground_truth_is_consistent(full_run):
    out, _ = full_run
    visible_errors = []
    fractions = []
    eye_checked = 0
    for record_path in sorted((out / "samples").glob("*.json")):
        record = json.loads(record_path.read_text())
        intrinsics = record["camera"]["intrinsics"]
        fx, fy, cx, cy = (intrinsics[k] for k in ("fx", "fy", "cx", "cy"))
        assert (intrinsics["width"], intrinsics["height"]) == (WIDTH, HEIGHT)
        world_to_camera = np.array(record["camera"]["world_to_camera"])
        assert np.allclose(world_to_camera[:3, :3] @ world_to_camera[:3, :3].T, np.eye(3), atol=1e-6)
        depth = read_exr(out / "samples" / record["files"]["depth"])["Y"]
        normal_channels = read_exr(out / "samples" / record["files"]["normal"])
        normals = np.stack([normal_channels[c] for c in "RGB"], axis=-1)
        lengths = np.linalg.norm(normals[depth > 0], axis=-1)
        assert np.allclose(lengths, 1.0, atol=1e-3) and not normals[depth == 0].any()
        # camera-axes normals face the camera: against the ray through their pixel
        v, u = np.nonzero(depth > 0)
        rays = np.stack([(u + 0.5 - cx) / fx, (v + 0.5 - cy) / fy, np.ones(len(u))], axis=1)
        assert (np.einsum("pc,pc->p", normals[v, u], rays) < 0).mean() > 0.95
        labels = read_png(out / "samples" / record["files"]["labels"])
        assert depth.shape == labels.shape == (HEIGHT, WIDTH)
        assert set(np.unique(labels)) <= set(LABELS.values())
        assert (labels > 0).sum() == (depth > 0).sum() > 0.1 * depth.size
        for name, landmarks in record["landmarks"].items():
            points = np.array(landmarks["points_3d"])
            camera_points = points @ world_to_camera[:3, :3].T + world_to_camera[:3, 3]
            assert np.allclose(camera_points, landmarks["points_camera"], atol=1e-9)
            pixels = np.asarray(camera2pixel(camera_points, fx, fy, cx, cy))
            assert np.allclose(pixels, np.array(landmarks["points_2d"], float), atol=1e-6), name
            visible = np.array(landmarks["visible"])
            fractions.append(visible.mean())
            assert not (visible & ~np.array(landmarks["in_frame"])).any()
            for point, seen in zip(camera_points, visible, strict=True):
                if seen:
                    visible_errors.append(surface_distances(depth, normals, (fx, fy, cx, cy), point).min())
            if name == "ibug68":
                for index in IBUG_EYES:
                    x, y = pixels[index]
                    # visible, and not on the silhouette (its own pixel sees the head)
                    if visible[index] and depth[int(y), int(x)] > 0:
                        assert labels[int(y), int(x)] == LABELS["eyes"], (record["id"], index)
                        eye_checked += 1
    errors = np.array(visible_errors)
    assert errors.max() <= 0.002  # metres
    assert np.median(errors) < 0.0003  # the depth map really is the landmarks' surface
    assert eye_checked >= 2 * COUNT
    assert np.mean(fractions) > 0.6 and min(fractions) > 0.3  # views within +-35 degrees


def test_shards_give_the_same_samples(full_run, flame_dir, tmp_path):
    out, _ = full_run
    # both shards at once into one folder, as array tasks of a cluster job do
    processes = [
        subprocess.Popen(
            batch_command(flame_dir, tmp_path, "--num", str(COUNT), "--seed", "3", "--shard", shard),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for shard in ("0/2", "1/2")
    ]
    for process in processes:
        _, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, stderr
    assert sorted(p.name for p in tmp_path.glob("index*")) == [
        "index.shard-0-of-2.jsonl", "index.shard-1-of-2.jsonl"
    ]
    merge = subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(tmp_path), "--merge-manifests"],
        capture_output=True, text=True, timeout=60,
    )
    assert merge.returncode == 0, merge.stderr
    assert read_manifest(tmp_path / "index.jsonl") == read_manifest(out / "index.jsonl")
    for record_path in sorted((out / "samples").glob("*.json")):
        assert (tmp_path / "samples" / record_path.name).read_bytes() == record_path.read_bytes()


def finished_samples(out) -> list:
    """Sample JSON files under their final names. pathlib's ``*`` also matches the hidden
    ``.NAME.<pid>.tmp.json`` of a write still in progress, which is not a finished sample."""
    return sorted(p for p in (out / "samples").glob("*.json") if not p.name.startswith("."))


def test_resume_after_a_kill_equals_an_uninterrupted_run(full_run, flame_dir, tmp_path):
    out, _ = full_run
    process = subprocess.Popen(
        batch_command(flame_dir, tmp_path, "--num", str(COUNT), "--seed", "3"),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 240
        while not finished_samples(tmp_path) and time.monotonic() < deadline:
            assert process.poll() is None, "the run ended before it could be killed"
            time.sleep(0.005)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=30)
    finished = finished_samples(tmp_path)
    assert 1 <= len(finished) < COUNT
    # Whatever is under a final name is complete; partial files only ever have hidden names.
    for path in (tmp_path / "samples").iterdir():
        if path.name.startswith("."):
            continue
        if path.suffix == ".png":
            read_png(path)
        elif path.suffix == ".exr":
            read_exr(path)
        else:
            json.loads(path.read_text())
    before = {p.name: p.stat().st_mtime_ns for p in finished}
    # what a kill in the middle of a write leaves: a hidden temporary, cleaned up by the rerun
    (tmp_path / "samples" / f".{COUNT - 1:06d}.rgb.png.99999.tmp.png").write_bytes(b"partial")

    result = run_batch(flame_dir, tmp_path, "--num", str(COUNT), "--seed", "3")
    assert result.returncode == 0, result.stderr
    assert f"{len(finished)} already done" in result.stdout
    assert {p.name: p.stat().st_mtime_ns for p in finished} == before  # skipped, not redone
    assert not [p for p in (tmp_path / "samples").iterdir() if p.name.startswith(".")]
    assert read_manifest(tmp_path / "index.jsonl") == read_manifest(out / "index.jsonl")
    for path in sorted((out / "samples").iterdir()):
        resumed = tmp_path / "samples" / path.name
        if path.suffix == ".png" and ".rgb." in path.name:
            # Cycles is deterministic per seed; allow for a denoiser rounding difference
            assert np.abs(read_png(resumed).astype(int) - read_png(path).astype(int)).max() <= 2
        else:
            assert resumed.read_bytes() == path.read_bytes(), path.name


def test_params_file_drives_the_heads_and_a_failing_sample_does_not_stop_the_run(flame_dir, tmp_path):
    params = tmp_path / "params.jsonl"
    params.write_text(
        json.dumps({"shape": [0.5, -0.5], "jaw_pose": [0.2, 0.0, 0.0]}) + "\n"
        + json.dumps({"expression": [1.0], "global_pose": [0.0, 0.3, 0.0]}) + "\n"
    )
    out = tmp_path / "out"
    (out / "samples").mkdir(parents=True)
    (out / "samples" / "000000.rgb.png").mkdir()  # sample 0's picture cannot land there
    result = run_batch(flame_dir, out, "--params", str(params))
    assert result.returncode == 1
    records = read_manifest(out / "index.jsonl")
    assert [r["status"] for r in records] == ["failed", "ok"]
    assert "000000.rgb.png" in records[0]["error"]
    assert "failed 000000" in result.stderr
    sample = json.loads((out / "samples" / "000001.json").read_text())
    assert sample["flame"]["expression"][0] == 1.0 and sample["flame"]["global_pose"] == [0.0, 0.3, 0.0]
    assert not any(sample["flame"]["shape"])


@pytest.mark.parametrize(
    "case",
    ["unknown device", "malformed params", "unwritable output", "changed settings", "bad ranges"],
)
def test_bad_input_is_refused_and_nothing_is_overwritten(case, full_run, flame_dir, tmp_path):
    source, _ = full_run
    out = tmp_path / "out"
    shutil.copytree(source, out)
    before = snapshot(out)
    if case == "unknown device":
        command = batch_command(flame_dir, out, "--num", str(COUNT), "--seed", "3")
        command[command.index("--device") + 1] = "TPU"
        expected = "--device"
    elif case == "malformed params":
        params = tmp_path / "params.jsonl"
        params.write_text('{"shape": [0.1, 0.2]}\n{"jaw_pose": [0.1, oops]}\n')
        command = batch_command(flame_dir, out, "--params", str(params))
        expected = "line 2"
    elif case == "unwritable output":
        blocker = tmp_path / "a-file"
        blocker.write_text("not a folder")
        command = batch_command(flame_dir, blocker / "out", "--num", "1")
        expected = "cannot write"
    elif case == "bad ranges":
        command = batch_command(flame_dir, out, "--num", str(COUNT), "--ranges", '{"zoom": [1, 2]}')
        expected = "unknown ranges"
    else:
        command = batch_command(flame_dir, out, "--num", str(COUNT), "--seed", "4")
        expected = "different settings"
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stdout + result.stderr
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
    assert snapshot(out) == before
    assert os.path.exists(out / "index.jsonl")
