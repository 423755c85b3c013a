"""The writer thread's half of the batch renderer: from the two scratch files Blender wrote for a
sample (the picture as an uncompressed TGA, the ground-truth passes as a multilayer EXR), the
sample's PNG picture, depth, normal and label files, and last its JSON. Plain data in, no
Blender API, so it runs while Cycles renders the next image.

:class:`BatchOutputs` is a part of :class:`.batch.BatchRenderer` (which sets ``settings``,
``forward``, ``landmark_names``, ``head_triangles``, ``view_layer_name``, ``parameters``,
``texture_model`` and ``albedo_note``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...core.io.atomic import temporary_path
from ...core.render import camera as core_camera
from ...core.render import sample_record
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
    paths: dict[str, Path]  # FILE_KINDS kind -> final path
    picture: Path  # the picture (uncompressed TGA), deleted once written as the PNG
    scratch: Path  # the ground-truth passes (multilayer EXR), deleted once read
    region: tuple[int, int, int, int] | None  # the pixels the ground truth rendered, None: all
    head_centre: np.ndarray  # (3,) FLAME space, where the studio camera aims



class BatchOutputs:
    """The writer thread's part of :class:`.batch.BatchRenderer` (see the module docstring)."""

    def write_sample(self, job: SampleJob) -> None:
        """The rest of one sample, without Blender (writer thread): read the passes, write the
        depth, normal and label files, then the JSON, which marks the sample finished."""
        s = self.settings
        with self._phase("write outputs (writer thread)"):
            try:
                # zlib level 1, as Blender's own PNG writer at its default compression (15 %)
                write_png(job.paths["rgb"], read_tga(job.picture), compression=1)
                truth = passes.read_ground_truth(job.scratch, self.view_layer_name, job.region, s.resolution)
            finally:
                job.picture.unlink(missing_ok=True)
                job.scratch.unlink(missing_ok=True)
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


def head_region(camera: SampleCamera, vertices: np.ndarray) -> tuple[int, int, int, int] | None:
    """The pixels that can see the head (``(5023, 3)`` FLAME-space ``vertices``): the only
    ones the ground-truth render needs, the rest being background."""
    points = vertices @ camera.world_to_camera[:3, :3].T + camera.world_to_camera[:3, 3]
    return core_camera.pixel_region(points, *camera.intrinsics, camera.width, camera.height)


def scratch_path(folder: Path, name: str, suffix: str) -> Path:
    """A hidden temporary for one of sample ``name``'s scratch files, ending in its suffix."""
    path = temporary_path(folder / f"{name}.{suffix}")
    return path.with_name(path.name + path.suffix)
