"""The batch renderer's Blender scene, driven from the main thread: built once (a plain-mesh
head, the Cycles device and passes, the materials), then set per sample (the head's vertices
from core's forward pass, a new albedo image, the studio camera and lights), and read back as
core's :class:`SampleCamera`.

:class:`BatchScene` is a part of :class:`.batch.BatchRenderer` (which sets ``settings``,
``model_file``, ``flame_folder`` and ``texture_model`` before :meth:`BatchScene._build_scene`);
subclasses override :meth:`BatchScene._set_scene` to place another camera.
"""

from __future__ import annotations

import bpy
import numpy as np

from ...core.render import camera as core_camera
from ...core.render.dataset import SampleSpec
from ...core.render.sample_record import SampleCamera
from . import device as cycles_device
from . import material, passes, studio, visibility


class BatchScene:
    """The Blender side of :class:`.batch.BatchRenderer` (see the module docstring)."""

    def _build_scene(self) -> None:
        s = self.settings
        bpy.ops.wm.read_homefile(use_empty=True)
        scene = bpy.context.scene
        self.scene = scene
        from .. import head_import, pose_correction

        # The head as a plain mesh whose vertices are core's forward pass, written per sample:
        # exact by construction, and no shape keys for Blender to blend at every evaluation.
        # (one component: the smallest head import makes; its shape keys are removed at once)
        self.head = head_import.import_head(scene, self.model_file, n_shape=1, n_expression=0)
        self.head.shape_key_clear()
        pose_correction.remove(self.head)  # no pose to play: no modifier for Blender to evaluate
        scene.view_layers[0].update()  # the studio reads the head's matrix_world: make it current
        self._mesh_checked = False
        # the rendered triangles, for the writer thread's ground truth and exact ray-cast
        # visibility, and each one's label (from its polygon's)
        self.head_triangles = visibility.mesh_triangles(self.head)
        self.device_choice = cycles_device.select_cycles_device(scene, s.device)
        passes.prepare_scene(scene, s.resolution[0], s.resolution[1], s.samples)
        scene.cycles.denoising_prefilter = s.denoise_prefilter
        material.ensure_head_material(self.head, self.texture_model)
        labels = material.assign_labels(self.head, self.flame_folder)
        self.head_triangle_labels = labels[visibility.mesh_triangle_polygons(self.head)]

    def _set_head_vertices(self, vertices: np.ndarray) -> None:
        """Write ``(5023, 3)`` FLAME-space vertices into the head's mesh (Blender recomputes
        its normals; Cycles re-syncs only this mesh)."""
        mesh = self.head.data
        flat = np.ascontiguousarray(vertices, np.float32).reshape(-1)
        position = mesh.attributes.get("position")
        if position is not None and position.data_type == "FLOAT_VECTOR":
            position.data.foreach_set("vector", flat)  # float32 in: a plain copy
        else:
            mesh.vertices.foreach_set("co", flat)
        mesh.update()

    def _head_vertex_normals(self) -> np.ndarray:
        """Blender's vertex normals of the head ``(5023, 3)`` float32, FLAME space: those Cycles
        blends across each triangle of the smooth-shaded head (main thread, after
        :meth:`_set_head_vertices`)."""
        normals = np.empty(3 * len(self.head.data.vertices), np.float32)
        self.head.data.vertex_normals.foreach_get("vector", normals)
        return normals.reshape(-1, 3)

    def _set_scene(self, spec: SampleSpec, vertices: np.ndarray, albedo: np.ndarray | None) -> None:
        s = self.settings
        scene, head = self.scene, self.head
        if albedo is not None:
            self._set_albedo(albedo)
        studio.setup_studio(
            scene,
            head,
            studio.StudioSettings(
                focal_length=spec.camera.focal_length,
                distance=spec.camera.distance,
                azimuth=spec.camera.azimuth,
                elevation=spec.camera.elevation,
                light_azimuth=spec.light.azimuth,
                light_elevation=spec.light.elevation,
                light_power=spec.light.power,
                fill_ratio=spec.light.fill_ratio,
                world_strength=spec.light.world_strength,
                transparent=s.transparent,
            ),
            centre=studio.head_centre(vertices),
        )
        scene.cycles.seed = spec.index % (2**31)

    def _set_albedo(self, pixels: np.ndarray) -> None:
        """The head's albedo image (:func:`material.albedo_pixels`), as a new image datablock.

        A persistent Cycles session does not reload an image whose pixels changed in place
        (it would keep rendering the first sample's albedo); a new image is loaded.
        """
        head = self.head
        previous = bpy.data.images.get(material.image_name(head))
        if previous is not None:
            previous.name = f"{previous.name} (previous)"  # frees the name for the new image
        image = material.write_albedo_image(head, pixels, self.texture_model.colorspace != "sRGB")
        head.active_material.node_tree.nodes["FLAME Albedo"].image = image
        if previous is not None:
            bpy.data.images.remove(previous)

    def sample_camera(self) -> SampleCamera:
        """The scene camera as core's :class:`SampleCamera` (read from Blender, main thread)."""
        s = self.settings
        scene, head, camera = self.scene, self.head, self.scene.camera
        width, height = s.resolution
        data = camera.data
        fx, fy, cx, cy = core_camera.intrinsics_from_blender(
            data.lens, data.sensor_width, data.sensor_height, data.sensor_fit, width, height,
            data.shift_x, data.shift_y,
            scene.render.pixel_aspect_x / scene.render.pixel_aspect_y,
        )
        camera_matrix = np.array(camera.matrix_world, np.float64)
        blender_world_to_camera = np.asarray(
            core_camera.world_to_camera_from_blender(camera_matrix), np.float64
        )
        return SampleCamera(
            fx=fx, fy=fy, cx=cx, cy=cy, width=width, height=height,
            world_to_camera=blender_world_to_camera @ np.array(head.matrix_world),
            blender_world_to_camera=blender_world_to_camera,
            blender_camera_matrix_world=camera_matrix,
        )
