"""The writer thread's half of the batch renderer: from the picture Blender saved for a sample
(an uncompressed TGA scratch file) and the rendered mesh, the sample's PNG picture, its ground
truth (rasterized exactly, :mod:`flame_blender.core.render.rasterize`), the depth, normal and
label files, and last its JSON. Plain data in, no Blender API, so it runs while Cycles renders
the next image.

:class:`BatchOutputs` is a part of :class:`.batch.BatchRenderer` (which sets ``settings``,
``forward``, ``landmark_names``, ``head_triangles``, ``head_triangle_labels``, ``parameters``,
``texture_model`` and ``albedo_note``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...core.io.atomic import temporary_path
from ...core.render import rasterize, sample_record
from ...core.render.dataset import SampleSpec
from ...core.render.png import write_png
from ...core.render.sample_record import SampleCamera
from ...core.render.tga import read_tga
from . import passes, visibility


@dataclass
class SampleJob:
    """What the writer thread needs to finish one sample (plain data, no Blender objects)."""

    spec: SampleSpec
    name: str
    camera: SampleCamera
    landmark_points: dict[str, np.ndarray]  # --landmarks name -> (L, 3) FLAME space
    vertices: np.ndarray  # (5023, 3) FLAME space, the rendered mesh
    vertex_normals: np.ndarray  # (5023, 3) float32 FLAME space, Blender's (what Cycles shades with)
    clip: tuple[float, float]  # the camera's clip_start and clip_end (metres)
    paths: dict[str, Path]  # FILE_KINDS kind -> final path
    picture: Path  # the picture (uncompressed TGA), deleted once written as the PNG
    head_centre: np.ndarray  # (3,) FLAME space, where the studio camera aims



class BatchOutputs:
    """The writer thread's part of :class:`.batch.BatchRenderer` (see the module docstring)."""

    def write_sample(self, job: SampleJob) -> None:
        """The rest of one sample, without Blender (writer thread): the PNG picture, the ground
        truth, the depth, normal and label files, then the JSON, which marks the sample
        finished."""
        s = self.settings
        with self._phase("write outputs (writer thread)"):
            try:
                # zlib level 1, as Blender's own PNG writer at its default compression (15 %)
                write_png(job.paths["rgb"], read_tga(job.picture), compression=1)
            finally:
                job.picture.unlink(missing_ok=True)
            with self._phase("ground truth (rasterized, writer thread)"):
                truth = ground_truth(job, self.head_triangles, self.head_triangle_labels)
            normals = sample_record.camera_normals(truth.normals_world, job.camera)
            sample_record.write_ground_truth_images(job.paths, truth.depth, normals, truth.labels)
            # the jaw contour seen from this sample's camera, and the exact ray cast on the
            # rendered triangles (a BVH of this sample's vertices: no Blender data off the main
            # thread)
            contour_points, contour = sample_record.camera_contour_points(
                self.forward.landmarks, job.vertices, job.spec.parameters, self.landmark_names,
                job.camera.world_to_camera, job.head_centre,
            )
            ray_visibility = visibility.ray_visibility_from_mesh(
                job.vertices, self.head_triangles, job.camera.world_to_camera
            )
            landmarks = sample_record.sample_landmarks(
                {**job.landmark_points, **contour_points}, self.landmark_names, job.camera,
                truth.depth, normals, ray_visibility=ray_visibility, contour=contour,
            )
            record = sample_record.sample_record(
                job.spec,
                name=job.name,
                seed=s.seed,
                flame_source="random" if self.parameters is None else "params",
                albedo_model=self.texture_model.kind if self.texture_model else None,
                camera=job.camera,
                landmarks=landmarks,
                files={kind: path.name for kind, path in job.paths.items() if kind != "json"},
                albedo_note=self.albedo_note,
            )
            sample_record.write_sample_json(job.paths["json"], record)


def ground_truth(job: SampleJob, triangles: np.ndarray, triangle_labels: np.ndarray) -> passes.GroundTruth:
    """The sample's ground truth, what a one-sample Cycles render with a vanishing pixel filter
    measures, computed exactly without Blender (:func:`core.render.rasterize.rasterize`): at
    each pixel centre, the nearest hit of its camera ray on the rendered float32 triangles
    ``(T, 3)`` within the camera's clip range; its camera z, Blender's vertex normals blended
    there as Cycles shades the smooth head (in Blender's world, as the normal pass), and its
    triangle's label (``triangle_labels (T,)`` uint8)."""
    camera = job.camera
    vertices = np.asarray(job.vertices, np.float32)  # as Blender stores and Cycles renders them
    hits = rasterize.rasterize(
        vertices, triangles, camera.world_to_camera, camera.intrinsics, camera.size, job.clip
    )
    # the head's object -> Blender world matrix; Cycles transforms and renormalises each vertex
    # normal with it before blending them
    # (world_to_camera = blender_world_to_camera @ head matrix, the former a rotation; no
    # LAPACK call: OpenBLAS threads would busy-wait on the cores Cycles renders with)
    head_matrix = np.einsum(
        "ji,jk->ik", camera.blender_world_to_camera[:3, :3], camera.world_to_camera[:3, :3]
    )
    vertex_normals = rasterize.transform_normals(job.vertex_normals, head_matrix)
    normals = rasterize.smooth_normals(hits, triangles, vertex_normals)
    return passes.GroundTruth(
        depth=hits.image(hits.depth, dtype=np.float32),
        normals_world=hits.image(normals, dtype=np.float32),
        labels=hits.image(np.asarray(triangle_labels, np.uint8).take(hits.triangle)),
        mask=hits.mask,
    )


def scratch_path(folder: Path, name: str, suffix: str) -> Path:
    """A hidden temporary for one of sample ``name``'s scratch files, ending in its suffix."""
    path = temporary_path(folder / f"{name}.{suffix}")
    return path.with_name(path.name + path.suffix)
