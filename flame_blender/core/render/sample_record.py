"""One rendered sample's record, without Blender: camera, landmarks and their visibility, the
ground-truth images, and the JSON written beside each picture of a batch render.

The batch renderer (``flame_blender.blender.render.batch``) reads the camera from Blender and
the passes from Cycles; everything it then derives and writes is computed here from plain
arrays, so it can be checked, reused and run off the render thread without Blender.

Conventions are those of :mod:`flame_blender.core.render.camera` and are stated in every record
(:data:`CONVENTIONS`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..io.atomic import atomic_write_text
from ..model.landmarks import ContourChoice, LandmarkSet, landmarks_for_camera
from ..model.parameters import FlameParameters
from .dataset import SampleSpec
from .exr import write_exr
from .ground_truth import intrinsic_matrix, project_landmarks
from .png import write_png
from .segmentation import LABELS

CONVENTIONS = {
    "world": "FLAME model space: what FLAME.forward returns; metres, y up, face towards +z, "
    "the head's left eye at +x",
    "camera": "OpenCV axes: x right, y down, z forward (visible points have z > 0); "
    "world_to_camera maps world points to camera points, p_cam = R @ p_world + t",
    "pixels": "(0, 0) is the top-left corner of the image, the first pixel's centre is (0.5, 0.5); "
    "u = fx * x / z + cx, v = fy * y / z + cy",
    "depth": "camera z in metres at each pixel centre (not the distance to the camera centre); "
    "0 on background",
    "normals": "unit surface normals in camera axes (OpenCV), 0 on background",
    "visible": "in front of the camera, inside the image, and the rendered surface at the "
    "landmark (the tangent plane of one of the four pixel centres around it, met by the "
    "landmark's ray) is within 2 mm of its camera z: nothing in front of it. A landmark right "
    "on a silhouette, where no pixel around it sees its own surface, counts as not visible",
    "visible_ray": "in front of the camera, inside the image, and the straight segment from "
    "the camera centre to the landmark meets the rendered head mesh nowhere more than 0.1 mm "
    "before the landmark (Blender BVH ray cast, exact); occluded_by_m says how far before it "
    "the first surface met is",
    "contour": "ibug68_dynamic: the jaw-contour row is chosen from the head's yaw relative to "
    "the camera (the line of sight to the head's centre), not from the head pose alone; "
    "yaw_deg > 0 = the face turned toward its left (+x) as the camera sees it",
}
#: Embeddings whose jaw contour slides with the head's yaw (chosen per camera).
CONTOUR_EMBEDDINGS = ("dynamic_68", "dynamic_contour")
#: ``(L, 3)`` FLAME-space points -> whether a ray from the camera centre reaches each one
#: ``(L,)`` bool, and how far before it the first surface met is ``(L,)`` metres.
RayVisibility = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class SampleCamera:
    """The pinhole camera of one sample.

    ``world_to_camera`` ``(4, 4)`` maps FLAME model space to OpenCV camera axes;
    ``blender_world_to_camera`` ``(4, 4)`` maps Blender's world to the same axes (the passes'
    normals are in Blender's world); ``blender_camera_matrix_world`` ``(4, 4)`` is the Blender
    camera object's matrix, kept so the view can be rebuilt in Blender.
    """

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int
    world_to_camera: np.ndarray
    blender_world_to_camera: np.ndarray
    blender_camera_matrix_world: np.ndarray

    @property
    def intrinsics(self) -> tuple[float, float, float, float]:
        return (self.fx, self.fy, self.cx, self.cy)

    @property
    def size(self) -> tuple[int, int]:
        return (self.width, self.height)


def camera_normals(normals_world: np.ndarray, camera: SampleCamera) -> np.ndarray:
    """Blender world-space normals ``(H, W, 3)`` turned into camera (OpenCV) axes, float32.

    Zero normals (background) stay zero.
    """
    rotation = np.asarray(camera.blender_world_to_camera, np.float64)[:3, :3]
    return np.asarray(normals_world, np.float32) @ rotation.T.astype(np.float32)


def camera_contour_points(
    landmarks: LandmarkSet,
    vertices: np.ndarray,
    parameters: FlameParameters,
    embeddings: Mapping[str, str],
    world_to_camera: np.ndarray,
    head_centre: np.ndarray | None,
) -> tuple[dict[str, np.ndarray], ContourChoice | None]:
    """The landmark sets among ``embeddings`` (set name -> embedding) whose jaw contour slides
    with the yaw, with the contour row chosen for this camera
    (:func:`..model.landmarks.landmarks_for_camera`): set name -> ``(L, 3)`` FLAME-space points
    of the posed ``vertices (V, 3)``, and the choice (None when no set has a contour).

    ``world_to_camera`` ``(4, 4)`` OpenCV, world = FLAME model space; ``head_centre`` ``(3,)``
    the point the line of sight aims at.
    """
    dynamic = {name: key for name, key in embeddings.items() if key in CONTOUR_EMBEDDINGS}
    if not dynamic:
        return {}, None
    points, choice = landmarks_for_camera(
        landmarks, vertices, parameters.global_pose, parameters.neck_pose, world_to_camera, head_centre
    )
    return {name: np.asarray(points[key], np.float64).reshape(-1, 3) for name, key in dynamic.items()}, choice


def sample_landmarks(
    landmark_points: Mapping[str, np.ndarray],
    embeddings: Mapping[str, str],
    camera: SampleCamera,
    depth: np.ndarray | None,
    normals: np.ndarray | None,
    *,
    ray_visibility: RayVisibility | None = None,
    contour: ContourChoice | None = None,
) -> dict[str, dict[str, Any]]:
    """Every landmark set of one sample, as written to its JSON: the one place they are computed.

    Args:
        landmark_points: set name (``--landmarks`` name) -> ``(L, 3)`` FLAME-space points.
        embeddings: set name -> the embedding it came from (e.g. ``static_68``).
        camera: the sample's camera.
        depth: ``(H, W)`` rendered camera z, 0 on background (None: no visibility test).
        normals: ``(H, W, 3)`` rendered camera-axes normals (needed with ``depth``).
        ray_visibility: the exact rule (a ray cast on the rendered mesh); adds ``visible_ray``
            (it reaches the landmark, which is in frame) and ``occluded_by_m``.
        contour: the jaw-contour row used by the sets whose embedding slides with the yaw
            (:func:`camera_contour_points`); recorded as their ``contour``.

    Returns set name -> ``{"embedding", "points_3d", "points_camera", "points_2d", "in_frame",
    "visible"}`` (plain lists; ``points_2d`` rows are None behind the camera), plus
    ``visible_ray``, ``occluded_by_m`` and ``contour`` where asked for.
    """
    landmarks = {}
    for set_name, points in landmark_points.items():
        projected = project_landmarks(
            points, camera.world_to_camera, camera.intrinsics, camera.size, depth, normals
        )
        entry = {"embedding": embeddings[set_name], **projected.to_dict()}
        if ray_visibility is not None:
            reached, occluded_by = ray_visibility(np.asarray(points, np.float64).reshape(-1, 3))
            entry["visible_ray"] = (np.asarray(reached, bool) & projected.in_frame).tolist()
            entry["occluded_by_m"] = np.asarray(occluded_by, np.float64).tolist()
        if contour is not None and embeddings[set_name] in CONTOUR_EMBEDDINGS:
            entry["contour"] = contour.to_dict()
        landmarks[set_name] = entry
    return landmarks


def sample_record(
    spec: SampleSpec,
    *,
    name: str,
    seed: int,
    flame_source: str,
    albedo_model: str | None,
    camera: SampleCamera,
    landmarks: Mapping[str, Any],
    files: Mapping[str, str],
    albedo_note: str | None = None,
) -> dict[str, Any]:
    """The JSON object of one sample (plain Python values, ready for ``json.dumps``).

    ``files`` maps kinds (``rgb``, ``depth``, ...) to file names beside the JSON;
    ``albedo_note`` says why there is no albedo (``albedo.model`` null); what an adapter put in
    ``spec.extra`` (a tracked sequence's ``frame_id``) is added at the top level.
    """
    albedo: dict[str, Any] = {"model": albedo_model, "coefficients": spec.albedo.tolist()}
    if albedo_note:
        albedo["note"] = albedo_note
    record = {
        "id": name,
        "index": spec.index,
        "seed": seed,  # the albedo, camera and light always come from (seed, index)
        "flame_source": flame_source,
        "flame": spec.parameters.to_dict(),
        "albedo": albedo,
        "camera": {
            "intrinsics": {
                "fx": camera.fx, "fy": camera.fy, "cx": camera.cx, "cy": camera.cy,
                "width": camera.width, "height": camera.height,
            },
            "K": intrinsic_matrix(camera.fx, camera.fy, camera.cx, camera.cy).tolist(),
            "world_to_camera": np.asarray(camera.world_to_camera, np.float64).tolist(),
            "focal_length_mm": spec.camera.focal_length,
            "sensor_width_mm": spec.camera.sensor_width,
            "distance_m": spec.camera.distance,
            "azimuth_deg": spec.camera.azimuth,
            "elevation_deg": spec.camera.elevation,
            "blender_camera_matrix_world": [
                [float(value) for value in row] for row in camera.blender_camera_matrix_world
            ],
        },
        "light": {
            "azimuth_deg": spec.light.azimuth,
            "elevation_deg": spec.light.elevation,
            "key_power_w": spec.light.power,
            "fill_ratio": spec.light.fill_ratio,
            "world_strength": spec.light.world_strength,
        },
        "landmarks": dict(landmarks),
        "files": dict(files),
        "labels": {str(value): label for label, value in LABELS.items()},
        "conventions": CONVENTIONS,
    }
    record.update(spec.extra)
    return record


def write_ground_truth_images(
    paths: Mapping[str, Path], depth: np.ndarray, normals: np.ndarray, labels: np.ndarray
) -> None:
    """Write the depth (EXR, channel Y), camera-axes normals (EXR, R G B = x y z) and labels
    (8-bit grey PNG) of one sample to ``paths["depth"]``, ``paths["normal"]``,
    ``paths["labels"]``, each atomically. ``depth`` ``(H, W)``, ``normals`` ``(H, W, 3)``,
    ``labels`` ``(H, W)`` uint8."""
    write_exr(paths["depth"], {"Y": depth})
    write_exr(paths["normal"], {"R": normals[..., 0], "G": normals[..., 1], "B": normals[..., 2]})
    write_png(paths["labels"], labels)


def write_sample_json(path: Path, record: Mapping[str, Any]) -> Path:
    """Write a sample's record atomically; the batch writes it last (it marks the sample done).

    One line, no indentation: ``json`` encodes that in C, ten times faster than indented
    output (pure Python), and the files are half the size.
    """
    return atomic_write_text(path, json.dumps(record) + "\n")
