"""The batch renderer's ground truth (rasterized on the writer thread, core.render.rasterize)
against Cycles' own: a full-frame render at one sample per pixel with a 0.01 px pixel filter of
the same head and camera (bpy + Cycles), which measures the same thing in float32.

Cycles' normal pass averages the material's closure normals; with the material's "bump map
correction" (on by default) the Principled BSDF's specular normal is bent where the reflected
ray would dip below the triangle, at grazing views. The reference turns it off, so its normal
pass is the shading normal itself, which is what the ground truth holds.
"""

from __future__ import annotations

import numpy as np
import pytest


def silhouette_distance(pixels: np.ndarray, vertices, triangles, camera) -> np.ndarray:
    """Distance (pixels) from each pixel centre ``(N, 2)`` (row, column) to the nearest
    projected triangle edge of the mesh."""
    points = vertices @ camera.world_to_camera[:3, :3].T + camera.world_to_camera[:3, 3]
    fx, fy, cx, cy = camera.intrinsics
    projected = np.stack([fx * points[:, 0] / points[:, 2] + cx, fy * points[:, 1] / points[:, 2] + cy], 1)
    edges = np.concatenate([triangles[:, [0, 1]], triangles[:, [1, 2]], triangles[:, [2, 0]]])
    a, b = projected[edges[:, 0]], projected[edges[:, 1]]
    out = []
    for row, column in pixels:
        centre = np.array([column + 0.5, row + 0.5])
        along = np.clip(((centre - a) * (b - a)).sum(1) / ((b - a) ** 2).sum(1).clip(1e-30), 0, 1)
        out.append(np.linalg.norm(centre - (a + along[:, None] * (b - a)), axis=1).min())
    return np.array(out)


@pytest.mark.parametrize("index", [0, 1])
def test_rasterized_ground_truth_equals_a_cycles_point_sample_render(blender_addon, flame_dir, tmp_path, index):
    from flame_blender.blender.render import batch, batch_outputs, passes

    width, height = 120, 100  # not square: swapped axes or a flipped row order would show
    settings = batch.BatchSettings(
        out=tmp_path / "out", flame_dir=flame_dir, count=2, resolution=(width, height), samples=1,
        device="CPU",
    )
    renderer = batch.BatchRenderer(settings, log=lambda text: None)
    renderer.prepare()
    job = renderer.render_sample(index, "sample", tmp_path, renderer.sample_inputs(index))
    truth = batch_outputs.ground_truth(job, renderer.head_triangles, renderer.head_triangle_labels)

    material = renderer.head.active_material
    material.cycles.use_bump_map_correction = False
    passes.render_ground_truth_file(renderer.scene, tmp_path / "cycles.exr")
    cycles = passes.read_ground_truth(tmp_path / "cycles.exr", renderer.scene.view_layers[0].name)

    assert cycles.mask.sum() > 0.1 * width * height and not cycles.mask.all()
    # the silhouettes agree but where a pixel centre lies on an edge within Cycles' float32
    # rounding (a few 1e-5 px at this scale)
    differ = np.argwhere(truth.mask != cycles.mask)
    assert len(differ) <= 3, differ
    if len(differ):
        vertices = np.asarray(job.vertices, np.float32).astype(np.float64)
        distance = silhouette_distance(differ, vertices, renderer.head_triangles, job.camera)
        assert distance.max() < 1e-4, distance
    both = truth.mask & cycles.mask
    np.testing.assert_allclose(truth.depth[both], cycles.depth[both], rtol=0, atol=1e-5)
    np.testing.assert_allclose(truth.normals_world[both], cycles.normals_world[both], rtol=0, atol=1e-3)
    np.testing.assert_array_equal(truth.labels[both], cycles.labels[both])
    assert len(np.unique(truth.labels[both])) > 3  # several regions seen, so the labels mean something
    for image in (truth.depth, truth.normals_world, truth.labels):
        assert not image[~truth.mask].any()  # background is 0
    np.testing.assert_allclose(np.linalg.norm(truth.normals_world[truth.mask], axis=-1), 1.0, atol=1e-6)
