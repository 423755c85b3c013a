"""core.sample_record, the per-sample record of a batch render, checked without Cycles.

The reference scene is a sphere whose depth and normal maps are solved per pixel centre in
closed form (ray-sphere intersection), and cameras are built from geometry (look-at, axis-angle),
not from the code under test."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from flame_blender.core.render.dataset import sample_spec
from flame_blender.core.render.exr import read_exr
from flame_blender.core.render.png import read_png
from flame_blender.core.render.sample_record import (
    CONVENTIONS,
    SampleCamera,
    camera_normals,
    sample_landmarks,
    sample_record,
    write_ground_truth_images,
    write_sample_json,
)
from flame_blender.core.render.segmentation import LABELS

WIDTH, HEIGHT = 120, 90  # not square: catches swapped axes
FX, FY, CX, CY = 150.0, 150.0, 60.0, 45.0
RADIUS = 0.1
CENTRE_WORLD = np.array([0.02, -0.01, 0.03])


def axis_angle(axis, angle: float) -> np.ndarray:
    """Rotation matrix by Rodrigues' formula (textbook)."""
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * k @ k


@pytest.fixture(scope="module")
def scene():
    """A camera 0.5 m from a sphere, and the sphere's exact depth and normal maps."""
    rotation = axis_angle([0.3, 1.0, -0.2], 0.7)
    centre_camera = np.array([0.01, 0.02, 0.5])
    world_to_camera = np.eye(4)
    world_to_camera[:3, :3] = rotation
    world_to_camera[:3, 3] = centre_camera - rotation @ CENTRE_WORLD
    camera = SampleCamera(
        fx=FX, fy=FY, cx=CX, cy=CY, width=WIDTH, height=HEIGHT,
        world_to_camera=world_to_camera, blender_world_to_camera=np.eye(4),
        blender_camera_matrix_world=np.eye(4),
    )
    v, u = np.mgrid[0:HEIGHT, 0:WIDTH] + 0.5
    rays = np.stack([(u - CX) / FX, (v - CY) / FY, np.ones_like(u)], axis=-1)  # z = 1
    # |s * ray - C|^2 = r^2  ->  a s^2 - 2 b s + c = 0
    a = np.einsum("hwc,hwc->hw", rays, rays)
    b = rays @ centre_camera
    c = centre_camera @ centre_camera - RADIUS**2
    discriminant = b * b - a * c
    hit = discriminant > 0
    s = np.where(hit, (b - np.sqrt(np.where(hit, discriminant, 0))) / a, 0.0)
    depth = np.where(hit, s, 0.0)  # the ray has z = 1, so s is the camera z
    normals = np.where(hit[..., None], (s[..., None] * rays - centre_camera) / RADIUS, 0.0)
    return camera, depth.astype(np.float32), normals.astype(np.float32), rotation, centre_camera


def sphere_point(rotation, centre_camera, direction_camera) -> np.ndarray:
    """The world point on the sphere in the given camera-axes direction from its centre."""
    direction = np.asarray(direction_camera, float) / np.linalg.norm(direction_camera)
    point_camera = centre_camera + RADIUS * direction
    return rotation.T @ (point_camera - (centre_camera - rotation @ CENTRE_WORLD))


def test_landmarks_project_and_visibility_follows_the_surface(scene):
    camera, depth, normals, rotation, centre = scene
    towards_camera = -centre / np.linalg.norm(centre)
    side = np.cross(towards_camera, [0.0, 1.0, 0.0])
    near = [sphere_point(rotation, centre, towards_camera + k * side) for k in (0.0, 0.3, -0.5)]
    far = [sphere_point(rotation, centre, -towards_camera + k * side) for k in (0.0, 0.4)]
    floating = sphere_point(rotation, centre, towards_camera) + rotation.T @ (0.005 * towards_camera)
    behind = rotation.T @ (np.array([0.0, 0.0, -0.2]) - (centre - rotation @ CENTRE_WORLD))
    outside = rotation.T @ (np.array([0.4, 0.0, 0.5]) - (centre - rotation @ CENTRE_WORLD))
    points = np.array([*near, *far, floating, behind, outside])

    result = sample_landmarks({"test": points}, {"test": "static_68"}, camera, depth, normals)
    entry = result["test"]
    assert entry["embedding"] == "static_68"
    homogeneous = np.c_[points, np.ones(len(points))] @ camera.world_to_camera.T
    assert np.allclose(entry["points_camera"], homogeneous[:, :3], atol=1e-12)
    K = np.array([[FX, 0, CX], [0, FY, CY], [0, 0, 1]])
    for row, point, in_front in zip(entry["points_2d"], homogeneous[:, :3], [True] * 6 + [False, True], strict=True):
        if in_front:
            projected = K @ point
            assert np.allclose(row, projected[:2] / projected[2], atol=1e-9)
        else:
            assert row is None
    assert entry["in_frame"] == [True] * 6 + [False, False]
    assert entry["visible"] == [True, True, True, False, False, False, False, False]
    json.dumps(result)  # plain values only


def test_normals_turn_into_camera_axes():
    # A Blender camera 1 m in front of the origin along -y, looking at it (+y), up = Blender +z.
    blender_camera = np.eye(4)
    blender_camera[:3, :3] = axis_angle([1.0, 0.0, 0.0], math.pi / 2)  # local -z -> world +y
    blender_camera[:3, 3] = [0.0, -1.0, 0.0]
    world_to_blender_camera = np.linalg.inv(blender_camera)
    opencv = np.diag([1.0, -1.0, -1.0, 1.0]) @ world_to_blender_camera
    camera = SampleCamera(1, 1, 0, 0, 2, 1, np.eye(4), opencv, blender_camera)
    world = np.array([[[0.0, -1.0, 0.0], [0.0, 0.0, 1.0]]], np.float32)  # towards camera; up
    result = camera_normals(world, camera)
    assert result.dtype == np.float32
    # facing the camera is -z in OpenCV axes (z looks forward); up in the picture is -y
    assert np.allclose(result[0, 0], [0.0, 0.0, -1.0], atol=1e-6)
    assert np.allclose(result[0, 1], [0.0, -1.0, 0.0], atol=1e-6)


def test_record_holds_the_sample_and_survives_json(scene, tmp_path):
    camera, depth, normals, *_ = scene
    spec = sample_spec(5, 7, n_shape=4, n_expression=3, n_albedo=2)
    landmarks = {"ibug68": {"embedding": "static_68", "visible": [True]}}
    files = {"rgb": "000007.rgb.png", "depth": "000007.depth.exr"}
    record = sample_record(
        spec, name="000007", seed=5, flame_source="random", albedo_model="BFM",
        camera=camera, landmarks=landmarks, files=files,
    )
    path = write_sample_json(tmp_path / "000007.json", record)
    loaded = json.loads(path.read_text())
    assert loaded == json.loads(json.dumps(record))
    assert loaded["id"] == "000007" and loaded["index"] == 7 and loaded["seed"] == 5
    assert loaded["flame"]["shape"] == list(spec.parameters.shape)
    assert loaded["albedo"] == {"model": "BFM", "coefficients": list(spec.albedo)}
    intrinsics = loaded["camera"]["intrinsics"]
    assert (intrinsics["width"], intrinsics["height"]) == (WIDTH, HEIGHT)
    assert loaded["camera"]["K"] == [[FX, 0, CX], [0, FY, CY], [0, 0, 1]]
    assert np.array_equal(loaded["camera"]["world_to_camera"], camera.world_to_camera)
    assert loaded["camera"]["azimuth_deg"] == spec.camera.azimuth
    assert loaded["light"]["key_power_w"] == spec.light.power
    assert loaded["landmarks"] == landmarks and loaded["files"] == files
    assert {int(k): v for k, v in loaded["labels"].items()} == {v: k for k, v in LABELS.items()}
    assert loaded["conventions"] == CONVENTIONS


def test_ground_truth_images_round_trip(scene, tmp_path):
    _, depth, normals, *_ = scene
    labels = (depth > 0).astype(np.uint8) * LABELS["face"]
    paths = {kind: tmp_path / f"s.{kind}" for kind in ("depth", "normal", "labels")}
    write_ground_truth_images(paths, depth, normals, labels)
    assert np.array_equal(read_exr(paths["depth"])["Y"], depth)
    normal = read_exr(paths["normal"])
    assert np.array_equal(np.stack([normal[c] for c in "RGB"], axis=-1), normals)
    assert np.array_equal(read_png(paths["labels"]), labels)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def sphere_ray_cast(camera: SampleCamera):
    """The exact rule for the sphere, solved by hand: the segment from the camera centre to each
    point meets the sphere first at distance s (ray-sphere intersection); the point is reached
    when that is not before it. Returns (reached, how far before the point)."""
    rotation, translation = camera.world_to_camera[:3, :3], camera.world_to_camera[:3, 3]
    origin = -rotation.T @ translation  # camera centre in world

    def cast(points):
        offsets = points - origin
        lengths = np.linalg.norm(offsets, axis=1)
        directions = offsets / lengths[:, None]
        b = directions @ (CENTRE_WORLD - origin)
        c = (CENTRE_WORLD - origin) @ (CENTRE_WORLD - origin) - RADIUS**2
        discriminant = b * b - c
        entry = np.where(discriminant > 0, b - np.sqrt(np.maximum(discriminant, 0.0)), np.inf)
        reached = entry >= lengths - 1e-4
        return reached, np.where(reached, 0.0, lengths - entry)

    return cast


def test_ray_visibility_and_contour_are_recorded_where_asked(scene):
    from flame_blender.core.model.landmarks import ContourChoice

    camera, depth, normals, rotation, centre = scene
    towards_camera = -centre / np.linalg.norm(centre)
    near = sphere_point(rotation, centre, towards_camera)
    far = sphere_point(rotation, centre, -towards_camera)
    outside = rotation.T @ (np.array([0.4, 0.0, 0.5]) - (centre - rotation @ CENTRE_WORLD))
    points = np.array([near, far, outside])
    choice = ContourChoice(yaw_degrees=12.5, row=3, convention="deca")
    result = sample_landmarks(
        {"ibug68_dynamic": points, "ibug68": points},
        {"ibug68_dynamic": "dynamic_68", "ibug68": "static_68"},
        camera, depth, normals, ray_visibility=sphere_ray_cast(camera), contour=choice,
    )
    for entry in result.values():
        # the far point is behind the sphere: 2 R before it along the line through the centre
        # (the camera looks at the sphere's centre); the outside point is reached but not in frame
        assert entry["visible_ray"] == [True, False, False]
        assert entry["occluded_by_m"][0] == 0.0 and entry["occluded_by_m"][2] == 0.0
        assert abs(entry["occluded_by_m"][1] - 2 * RADIUS) < 1e-9
        assert entry["visible_ray"][:2] == entry["visible"][:2]
    assert result["ibug68_dynamic"]["contour"] == choice.to_dict()
    assert "contour" not in result["ibug68"]
    plain = sample_landmarks({"ibug68": points}, {"ibug68": "static_68"}, camera, depth, normals)
    assert "visible_ray" not in plain["ibug68"] and "occluded_by_m" not in plain["ibug68"]
    json.dumps(result)


def test_record_carries_the_albedo_note_and_the_adapters_extra(scene):
    import dataclasses

    camera, *_ = scene
    spec = dataclasses.replace(sample_spec(5, 7, n_shape=4, n_expression=3, n_albedo=0), extra={"frame_id": 42})
    note = "the head has no UVs"
    record = sample_record(
        spec, name="000007", seed=5, flame_source="params", albedo_model=None,
        camera=camera, landmarks={}, files={}, albedo_note=note,
    )
    assert record["albedo"] == {"model": None, "coefficients": [], "note": note}
    assert record["frame_id"] == 42
