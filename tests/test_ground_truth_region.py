"""The batch renderer renders the ground truth only over the head's pixels (bpy + Cycles).

Compared with a full-frame ground-truth render of the same sample: inside the region the passes
are the same, and outside it the full render sees nothing but background, so the background the
reader puts there is exact.
"""

from __future__ import annotations

import numpy as np


def test_region_ground_truth_equals_the_full_frame_render(blender_addon, flame_dir, tmp_path):
    from flame_blender.blender.render import batch, passes

    width, height = 72, 60  # not square: swapped axes or a flipped row order would show
    settings = batch.BatchSettings(
        out=tmp_path / "out", flame_dir=flame_dir, count=1, resolution=(width, height), samples=1,
        device="CPU",
    )
    renderer = batch.BatchRenderer(settings, log=lambda text: None)
    renderer.prepare()
    job = renderer.render_sample(0, "sample", tmp_path, renderer.sample_inputs(0))
    assert job.region is not None
    x0, y0, x1, y1 = job.region
    assert 0 < (x1 - x0) * (y1 - y0) < width * height  # a real crop, else the test proves nothing

    layer = renderer.view_layer_name
    cropped = passes.read_ground_truth(job.scratch, layer, job.region, (width, height))
    passes.render_ground_truth_file(renderer.scene, tmp_path / "full.exr")
    full = passes.read_ground_truth(tmp_path / "full.exr", layer)

    outside = np.ones((height, width), bool)
    outside[y0:y1, x0:x1] = False
    assert full.mask.any() and not full.mask[outside].any()  # the head lies inside the region
    np.testing.assert_array_equal(cropped.mask, full.mask)
    np.testing.assert_array_equal(cropped.labels, full.labels)
    np.testing.assert_allclose(cropped.depth, full.depth, rtol=0, atol=1e-6)
    np.testing.assert_allclose(cropped.normals_world, full.normals_world, rtol=0, atol=1e-6)
    # the scene's border settings are back as they were for the next picture
    assert not renderer.scene.render.use_border
