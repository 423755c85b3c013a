"""``bpy.ops.flame.import_head(teeth=True)``: VHAP's teeth in Blender, against an independent model."""

from __future__ import annotations

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

from flame_reference import reference_flame, teeth_model_by_hand  # noqa: E402

from flame_blender.blender import set_parameters  # noqa: E402
from flame_blender.core import FlameParameters, load_flame  # noqa: E402

TOLERANCE = 1e-5  # metres: the Blender path is float32


def test_import_with_teeth_poses_exactly(blender_scene, flame_dir, evaluated_vertices):
    assert bpy.ops.flame.import_head(filepath=str(flame_dir), n_shape=6, n_expression=4, teeth=True) == {"FINISHED"}
    obj = bpy.context.active_object
    assert obj.flame.teeth and len(obj.data.vertices) == 5143 and len(obj.data.polygons) == 9976 + 168
    assert len(obj.data.uv_layers) == 1  # the teeth have UVs too
    model = load_flame(flame_dir)
    model = dict(model, J_regressor=np.asarray(getattr(model["J_regressor"], "toarray", lambda: model["J_regressor"])()))
    by_hand = teeth_model_by_hand(model)
    faces = np.empty(3 * len(obj.data.polygons), dtype=np.int32)
    obj.data.polygons.foreach_get("vertices", faces)
    assert np.array_equal(faces.reshape(-1, 3)[:9976], np.asarray(model["f"], dtype=np.int64))
    params = FlameParameters.random(np.random.default_rng(6), 6, 4)
    params.jaw_pose[:] = (0.35, 0.02, 0.0)
    set_parameters(obj, params)
    bpy.context.view_layer.update()
    expected, _ = reference_flame(by_hand, params.forward_kwargs())
    got = evaluated_vertices(obj)
    assert got.shape == (5143, 3)
    assert np.abs(got - expected).max() < TOLERANCE
    # the lower teeth really followed the jaw
    rest, _ = reference_flame(by_hand, dict(params.forward_kwargs(), jaw_pose=np.zeros(3)))
    assert np.abs(got[5023 + 15 : 5023 + 30] - rest[5023 + 15 : 5023 + 30]).max() > 1e-3
