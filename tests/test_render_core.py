"""The rendering's pure-Python pieces: PNG/EXR files, atomic writes, sampling, shards, manifests,
segmentation labels, landmark visibility. No Blender needed."""

from __future__ import annotations

import json
import os
import zlib

import numpy as np
import pytest

from flame_blender.core.errors import FlameFileError, FlameParameterError
from flame_blender.core.io.atomic import (
    atomic_write_text,
    atomic_write_with,
    final_name_of_temporary,
    remove_stale_temporaries,
    temporary_path,
)
from flame_blender.core.render.contact_sheet import contact_sheet, draw_landmarks
from flame_blender.core.render.dataset import (
    SamplingRanges,
    parse_shard,
    sample_id,
    sample_spec,
    shard_indices,
)
from flame_blender.core.render.exr import read_exr, write_exr
from flame_blender.core.render.manifest import (
    manifest_path,
    merge_manifests,
    read_manifest,
    write_manifest,
)
from flame_blender.core.render.png import decode_png, encode_png, read_png, write_png
from flame_blender.core.render.segmentation import (
    LABELS,
    PRIORITY,
    face_labels,
    label_table,
    vertex_labels,
)


@pytest.mark.parametrize(
    "image",
    [
        np.arange(5 * 7, dtype=np.uint8).reshape(5, 7),
        np.random.default_rng(0).integers(0, 256, (9, 4, 3), dtype=np.uint8),
        np.random.default_rng(1).integers(0, 256, (3, 8, 4), dtype=np.uint8),
        np.random.default_rng(2).integers(0, 65536, (6, 5), dtype=np.uint16),
        np.random.default_rng(3).integers(0, 256, (4, 4, 2), dtype=np.uint8),
    ],
)
def test_png_round_trip(tmp_path, image):
    path = write_png(tmp_path / "a.png", image)
    assert np.array_equal(read_png(path), image)
    assert read_png(path).dtype == image.dtype


def test_png_reads_every_filter_type():
    # Rows filtered with None, Sub, Up, Average and Paeth, as other writers (Blender's libpng) do.
    rng = np.random.default_rng(4)
    image = rng.integers(0, 256, (5, 6, 3), dtype=np.uint8)
    bpp = 3
    rows = image.reshape(5, -1).astype(np.int64)
    raw = b""
    previous = np.zeros(rows.shape[1], np.int64)
    for y, kind in enumerate([0, 1, 2, 3, 4]):
        line = rows[y]
        out = []
        for i in range(len(line)):
            left = line[i - bpp] if i >= bpp else 0
            up = previous[i]
            upper_left = previous[i - bpp] if i >= bpp else 0
            if kind == 0:
                predictor = 0
            elif kind == 1:
                predictor = left
            elif kind == 2:
                predictor = up
            elif kind == 3:
                predictor = (left + up) // 2
            else:
                p = left + up - upper_left
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - upper_left)
                predictor = left if pa <= pb and pa <= pc else (up if pb <= pc else upper_left)
            out.append((line[i] - predictor) % 256)
        raw += bytes([kind]) + bytes(out)
        previous = line
    reference = encode_png(image)
    # splice our hand-filtered IDAT into a valid PNG
    header = reference[: reference.index(b"IDAT") - 4]
    body = zlib.compress(raw)
    import struct

    idat = struct.pack(">I", len(body)) + b"IDAT" + body + struct.pack(">I", zlib.crc32(b"IDAT" + body))
    iend = struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND"))
    assert np.array_equal(decode_png(header + idat + iend), image)


def test_png_rejects_garbage(tmp_path):
    path = tmp_path / "bad.png"
    path.write_bytes(b"not a png")
    with pytest.raises(FlameFileError, match="bad.png"):
        read_png(path)


def test_exr_round_trip(tmp_path):
    rng = np.random.default_rng(5)
    channels = {
        "Y": rng.standard_normal((37, 53)).astype(np.float32),
        "R": np.zeros((37, 53), np.float32),  # compresses: stored zipped
        "G": np.full((37, 53), np.inf, np.float32),
    }
    path = write_exr(tmp_path / "a.exr", channels)
    back = read_exr(path)
    assert sorted(back) == ["G", "R", "Y"]
    for name, plane in channels.items():
        assert np.array_equal(back[name], plane)


def test_atomic_write_leaves_old_file_when_the_writer_fails(tmp_path):
    path = tmp_path / "x.txt"
    atomic_write_text(path, "old")

    def failing(temporary):
        temporary.write_text("half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        atomic_write_with(path, failing)
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["x.txt"]


def test_stale_temporaries_are_removed_only_for_owned_names(tmp_path):
    mine = temporary_path(tmp_path / "000001.rgb.png")
    other = temporary_path(tmp_path / "000002.rgb.png")
    mine.write_text("partial")
    other.write_text("partial")
    assert final_name_of_temporary(mine.name) == "000001.rgb.png"
    assert final_name_of_temporary("000001.rgb.png") is None
    removed = remove_stale_temporaries(tmp_path, lambda name: name.startswith("000001"))
    assert removed == 1 and not mine.exists() and other.exists()


def test_samples_depend_only_on_seed_and_index():
    a = sample_spec(7, 5, 300, 100, 50)
    b = sample_spec(7, 5, 300, 100, 50)
    c = sample_spec(7, 6, 300, 100, 50)
    assert a.parameters.allclose(b.parameters) and np.array_equal(a.albedo, b.albedo)
    assert a.camera == b.camera and a.light == b.light
    assert not a.parameters.allclose(c.parameters) and a.camera != c.camera
    # other groups keep their values when one group's size changes
    d = sample_spec(7, 5, 300, 100, 10)
    assert d.camera == a.camera and d.light == a.light and d.parameters.allclose(a.parameters)


def test_sampling_ranges_are_respected_and_validated():
    ranges = SamplingRanges(camera_azimuth=(10.0, 10.0), focal_length=(50.0, 60.0))
    for index in range(20):
        spec = sample_spec(0, index, 10, 10, 0, ranges)
        assert spec.camera.azimuth == 10.0
        assert 50.0 <= spec.camera.focal_length <= 60.0
        assert -15.0 <= spec.camera.elevation <= 20.0
    assert SamplingRanges.from_dict(ranges.to_dict()) == ranges
    with pytest.raises(FlameParameterError, match="camera_azimuth"):
        SamplingRanges(camera_azimuth=(5.0, -5.0))
    with pytest.raises(FlameParameterError, match="unknown ranges"):
        SamplingRanges.from_dict({"zoom": 3})


def test_shards_partition_the_samples():
    count = 23
    for shards in (1, 2, 3, 7, 30):
        seen = [i for k in range(shards) for i in shard_indices(count, k, shards)]
        assert sorted(seen) == list(range(count))
    assert parse_shard("2/4") == (2, 4)
    for bad in ("4/4", "-1/2", "a/b", "3"):
        with pytest.raises(FlameParameterError, match="--shard"):
            parse_shard(bad)
    assert sample_id(3, 10) == "000003"
    assert sample_id(3, 10_000_000) == "0000003"


def test_manifests_merge_with_ok_winning(tmp_path):
    write_manifest(manifest_path(tmp_path, 0, 2), [
        {"index": 0, "id": "000000", "status": "ok"},
        {"index": 2, "id": "000002", "status": "failed", "error": "boom"},
    ])
    write_manifest(manifest_path(tmp_path, 1, 2), [
        {"index": 1, "id": "000001", "status": "ok"},
        {"index": 3, "id": "000003", "status": "pending"},
    ])
    # a later split (1 shard) finished sample 2
    write_manifest(manifest_path(tmp_path, 0, 4), [{"index": 2, "id": "000002", "status": "ok"}])
    path, counts = merge_manifests(tmp_path)
    assert path.name == "index.jsonl"
    records = read_manifest(path)
    assert [r["index"] for r in records] == [0, 1, 2, 3]
    assert [r["status"] for r in records] == ["ok", "ok", "ok", "pending"]
    assert counts == {"ok": 3, "pending": 1}
    assert all(json.loads(line) for line in path.read_text().splitlines())


def test_segmentation_priority_and_spreading():
    masks = {
        "face": np.array([0, 1, 2, 3]),
        "lips": np.array([1]),
        "left_eye_region": np.array([2]),
        "nose": np.array([2, 3]),
        "neck": np.array([5]),
        "eye_region": np.array([0]),  # not used: too broad
    }
    faces = np.array([[3, 4, 5], [4, 6, 3]])
    labels = vertex_labels(masks, 7, faces)
    assert labels[0] == LABELS["face"]
    assert labels[1] == LABELS["lips"]  # lips beat face
    assert labels[2] == LABELS["eyes"]  # eyes beat nose and face
    assert labels[3] == LABELS["nose"]
    assert labels[5] == LABELS["neck"]
    assert labels[4] in (LABELS["nose"], LABELS["neck"])  # spread from a neighbour
    assert labels[6] == labels[4] or labels[6] in (LABELS["nose"],)
    assert set(PRIORITY) == set(LABELS) - {"background"}
    tri = face_labels(np.array([1, 1, 2, 6, 2, 7], np.uint8), np.array([[0, 1, 2], [3, 4, 5]]))
    assert tri.tolist() == [1, 2]  # majority; else highest priority (eyes before lips, nose)
    assert [row["value"] for row in label_table()] == list(range(8))


def test_contact_sheet_draws_landmarks():
    tile = np.zeros((20, 30, 4), np.uint8)
    drawn = draw_landmarks(tile, np.array([[10.5, 5.5], [25.5, 15.5]]), np.array([True, False]), 1.0)
    assert tuple(drawn[5, 10]) == (40, 255, 80) and tuple(drawn[15, 25]) == (255, 60, 60)
    sheet = contact_sheet([drawn, drawn, drawn], columns=2, gap=2)
    assert sheet.shape == (2 * 20 + 3 * 2, 2 * 30 + 3 * 2, 3)


def test_landmark_visibility_uses_the_rendered_surface():
    from flame_blender.core.render.ground_truth import project_landmarks, surface_depths_near

    # A tilted plane z = 1 + 0.8 x seen by a 40 x 30 camera, rendered at pixel centres.
    width, height, f = 40, 30, 50.0
    intrinsics = (f, f, width / 2, height / 2)
    u, v = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    x_over_z = (u - width / 2) / f
    depth = 1.0 / (1.0 - 0.8 * x_over_z)  # z where the ray meets z = 1 + 0.8 x
    normal = np.array([-0.8, 0.0, 1.0]) / np.linalg.norm([-0.8, 0.0, 1.0])
    normals = np.broadcast_to(-normal, (height, width, 3))  # facing the camera
    on_plane = np.array([[0.05, 0.02, 1.04], [-0.1, -0.05, 0.92]])
    behind = on_plane + [0.0, 0.0, 0.01]  # 1 cm behind the surface: occluded
    outside = np.array([[5.0, 0.0, 1.0]])  # out of frame
    points = np.concatenate([on_plane, behind, outside])
    projected = project_landmarks(points, np.eye(4), intrinsics, (width, height), depth, normals)
    assert projected.visible.tolist() == [True, True, False, False, False]
    assert projected.in_frame.tolist() == [True, True, True, True, False]
    # the tangent planes give the surface depth exactly, wherever the point is in its pixel
    near = surface_depths_near(depth, normals, projected.pixels[:2], intrinsics)
    assert np.allclose(near, on_plane[:, 2:3], atol=1e-9)
    # without a depth map, every in-frame landmark counts as visible
    assert project_landmarks(points, np.eye(4), intrinsics, (width, height)).visible.sum() == 4


def test_render_batch_reads_its_arguments_after_a_double_dash():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "scripts" / "render_batch.py"
    spec = importlib.util.spec_from_file_location("render_batch_script", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    blender_argv = ["blender", "--background", "--python", "x.py", "--", "--out", "o", "--num", "3"]
    assert script.script_arguments(blender_argv) == ["--out", "o", "--num", "3"]
    assert script.script_arguments(["render_batch.py", "--out", "o"]) == ["--out", "o"]
    args = script.build_parser().parse_args(["--out", "o", "--device", "optix", "--resolution", "64", "32"])
    assert args.device == "OPTIX" and args.resolution == [64, 32] and args.shard == "0/1"
