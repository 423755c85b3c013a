"""Batch renders seen by a camera off to the side: the yaw-dependent jaw contour must follow
the head's rotation relative to the camera, so the far-side contour landmarks sit on the
silhouette in the rendered picture; and the exact ray-cast visibility is reported.

The silhouette is read from the rendered depth and normal maps (scripts/render_batch.py's own
output), not from the contour table: edges between neighbouring pixels where the surface steps
onto the background or onto another surface that neither pixel's tangent plane explains.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from flame_blender.core.render.exr import read_exr

REPO_ROOT = Path(__file__).resolve().parent.parent
SCRIPT = REPO_ROOT / "scripts" / "render_batch.py"
SIZE = 256
TOLERANCE_PX = 1.5
DEPTH_STEP = 0.003  # metres off a neighbour's tangent plane: a different surface
# iBUG contour order: 0 on the head's right (-x) ... 8 the chin ... 16 on its left (+x)
RIGHT_SIDE, LEFT_SIDE = list(range(0, 8)), list(range(9, 17))


def render(flame_dir: Path, out: Path, azimuth: float) -> tuple[dict, Path]:
    params = out.parent / f"frontal-{azimuth:+.0f}.jsonl"
    params.write_text("{}\n")  # a frontal head: every coefficient and pose zero
    ranges = {"camera_azimuth": [azimuth, azimuth], "camera_elevation": [0, 0]}
    command = [
        sys.executable, str(SCRIPT), "--flame-dir", str(flame_dir), "--out", str(out),
        "--params", str(params), "--resolution", str(SIZE), str(SIZE), "--samples", "1",
        "--device", "CPU", "--no-denoise", "--landmarks", "ibug68_dynamic", "ibug68",
        "--ranges", json.dumps(ranges),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    record_path = next((out / "samples").glob("*.json"))
    return json.loads(record_path.read_text()), record_path.parent


def silhouette_edges(depth: np.ndarray, normals: np.ndarray, intrinsics: dict) -> np.ndarray:
    """Midpoints ``(E, 2)`` (x, y pixels, (0, 0) = top-left corner) between neighbouring pixel
    centres where the surface ends: one is background, or neither pixel's tangent plane (its
    depth and normal) explains the other's depth to within DEPTH_STEP: a different surface."""
    fx, fy, cx, cy = (intrinsics[key] for key in ("fx", "fy", "cx", "cy"))
    height, width = depth.shape
    columns, rows = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    rays = np.stack([(columns - cx) / fx, (rows - cy) / fy, np.ones_like(columns)], axis=-1)
    points_3d = rays * depth[..., None]

    def explained(a, b):
        """Depth at pixel b's ray of the plane through pixel a's surface point, minus b's."""
        facing = np.einsum("...c,...c->...", normals[a], rays[b])
        with np.errstate(divide="ignore", invalid="ignore"):
            predicted = np.einsum("...c,...c->...", normals[a], points_3d[a]) / facing
        return np.abs(np.where(np.isfinite(predicted), predicted, np.inf) - depth[b])

    points = []
    for axis in (0, 1):
        a = (slice(0, height - 1), slice(None)) if axis == 0 else (slice(None), slice(0, width - 1))
        b = (slice(1, height), slice(None)) if axis == 0 else (slice(None), slice(1, width))
        both = (depth[a] > 0) & (depth[b] > 0)
        jump = np.minimum(explained(a, b), explained(b, a)) > DEPTH_STEP
        edge = ((depth[a] > 0) != (depth[b] > 0)) | (both & jump)
        r, c = np.nonzero(edge)
        x = c + 0.5 + (0.5 if axis == 1 else 0.0)
        y = r + 0.5 + (0.5 if axis == 0 else 0.0)
        points.append(np.stack([x, y], axis=1))
    return np.concatenate(points)


@pytest.fixture(scope="module")
def renders(flame_dir, tmp_path_factory):
    pytest.importorskip("bpy")
    return {
        azimuth: (render(flame_dir, tmp_path_factory.mktemp(f"azimuth{azimuth:+.0f}") / "out", azimuth))
        for azimuth in (30.0, -30.0)
    }


@pytest.mark.parametrize("azimuth", [30.0, -30.0])
def test_contour_sits_on_the_silhouette_in_the_picture(renders, azimuth: float) -> None:
    record, folder = renders[azimuth]
    depth = read_exr(folder / record["files"]["depth"])["Y"].astype(np.float64)
    normal = read_exr(folder / record["files"]["normal"])
    normals = np.stack([normal["R"], normal["G"], normal["B"]], axis=-1).astype(np.float64)
    edges = silhouette_edges(depth, normals, record["camera"]["intrinsics"])
    contour = record["landmarks"]["ibug68_dynamic"]
    # the camera toward the head's left (+x) sees the head as if turned toward its right: the
    # far side, turning away from this camera, is the right (-x) cheek
    far = RIGHT_SIDE if azimuth > 0 else LEFT_SIDE
    points = np.array([contour["points_2d"][i] for i in far])
    distances = np.linalg.norm(points[:, None, :] - edges[None, :, :], axis=2).min(axis=1)
    assert distances.max() <= TOLERANCE_PX, f"far-side contour {np.round(distances, 2)} px off the silhouette"
    # the row came from the camera: a frontal head seen from `azimuth` is yawed by -azimuth
    choice = contour["contour"]
    assert choice["yaw_deg"] == pytest.approx(-azimuth, abs=0.5)
    assert choice["relative_to"] == "camera" and choice["convention"] == "deca"


def test_ray_cast_visibility_is_reported_beside_the_picture_rule(renders) -> None:
    for record, _ in renders.values():
        for name in ("ibug68_dynamic", "ibug68"):
            landmarks = record["landmarks"][name]
            visible_ray = np.array(landmarks["visible_ray"])
            occluded_by = np.array(landmarks["occluded_by_m"])
            assert visible_ray.shape == (68,) and occluded_by.shape == (68,)
            assert np.all(occluded_by[visible_ray] == 0.0) and np.all(occluded_by[~visible_ray] > 0.0)
            # a frontal head seen from 30 degrees: the nose is in view, and the ray rule agrees
            # with the picture rule except at a silhouette (the jaw contour, 0..16)
            assert visible_ray[27:36].all()
            picture = np.array(landmarks["visible"])
            assert np.array_equal(visible_ray[17:], picture[17:])
        assert "visible_ray" in record["conventions"]
