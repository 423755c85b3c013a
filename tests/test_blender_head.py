"""The FLAME head in Blender: what import builds, the operators, bad input, registration."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

from flame_blender import blender as flame_blender_layer  # noqa: E402
from flame_blender.blender import get_parameters, import_head, set_parameters  # noqa: E402
from flame_blender.core import FlameParameters, load_flame, load_flame_masks  # noqa: E402

TOLERANCE = 1e-5  # metres


def data_counts() -> dict[str, int]:
    return {
        name: len(getattr(bpy.data, name))
        for name in ("objects", "meshes", "materials", "shape_keys", "images", "collections", "textures")
    }


def test_import_builds_the_head(small_head, flame_dir):
    obj = small_head
    mesh = obj.data
    model = load_flame(flame_dir)
    assert (len(mesh.vertices), len(mesh.polygons)) == (5023, 9976)
    assert all(len(polygon.vertices) == 3 for polygon in mesh.polygons[:50])
    faces = np.empty(9976 * 3, dtype=np.int32)
    mesh.polygons.foreach_get("vertices", faces)
    np.testing.assert_array_equal(faces.reshape(-1, 3), model["f"].astype(np.int64))
    smooth = np.empty(9976, dtype=bool)
    mesh.polygons.foreach_get("use_smooth", smooth)
    assert smooth.all()
    from flame_blender.core import load_template_mesh

    template = load_template_mesh(flame_dir / "head_template_mesh.obj")
    uvs = np.empty(9976 * 3 * 2, dtype=np.float32)
    mesh.uv_layers["UVMap"].data.foreach_get("uv", uvs)
    np.testing.assert_allclose(uvs.reshape(-1, 2), template.uvs[template.uv_faces.reshape(-1)], atol=1e-7)
    masks = load_flame_masks(flame_dir / "FLAME_masks.pkl")
    assert [group.name for group in obj.vertex_groups] == list(masks)
    lips = obj.vertex_groups["lips"].index
    in_lips = [v.index for v in mesh.vertices if any(g.group == lips for g in v.groups)]
    assert in_lips == sorted(set(masks["lips"].tolist()))
    # FLAME coordinates in the mesh (y up); the object stands the head up in Blender (z up).
    coordinates = np.empty(5023 * 3, dtype=np.float32)
    mesh.vertices.foreach_get("co", coordinates)
    np.testing.assert_allclose(coordinates.reshape(-1, 3), model["v_template"], atol=1e-7)
    assert tuple(obj.rotation_euler) == pytest.approx((math.pi / 2, 0.0, 0.0))
    names = [block.name for block in mesh.shape_keys.key_blocks]
    assert names == ["Basis", *[f"shape_{i:03d}" for i in range(10)],
                     *[f"expr_{i:03d}" for i in range(5)], "flame_pose"]
    for block in mesh.shape_keys.key_blocks[1:-1]:
        assert (block.slider_min, block.slider_max, block.value) == (-10.0, 10.0, 0.0)
    # A shape key is the template plus its FLAME component.
    data = np.empty(5023 * 3, dtype=np.float32)
    mesh.shape_keys.key_blocks["expr_002"].points.foreach_get("co", data)
    np.testing.assert_allclose(
        data.reshape(-1, 3), model["v_template"] + model["shapedirs"][:, :, 302], atol=1e-7
    )
    assert (obj.flame.is_head, obj.flame.n_shape, obj.flame.n_expression) == (True, 10, 5)
    assert len(obj.flame.eye_pose) == 6 and len(obj.flame.transl) == 3


def test_uvs_come_from_the_texture_file_without_the_template(blender_scene, flame_dir, tmp_path):
    import shutil

    from flame_blender.core import load_texture_model

    folder = tmp_path / "flame"
    shutil.copytree(flame_dir, folder)
    (folder / "head_template_mesh.obj").unlink()
    obj = import_head(blender_scene, folder, 2, 2)
    texture = load_texture_model(folder / "FLAME_texture.npz")
    got = np.empty(9976 * 3 * 2, dtype=np.float32)
    obj.data.uv_layers["UVMap"].data.foreach_get("uv", got)
    np.testing.assert_allclose(got.reshape(-1, 2), texture.uvs[texture.uv_faces.reshape(-1)], atol=1e-7)


def test_import_defaults_to_every_component(blender_scene, flame_dir):
    obj = import_head(blender_scene, flame_dir)
    assert (obj.flame.n_shape, obj.flame.n_expression) == (300, 100)
    assert len(obj.data.shape_keys.key_blocks) == 402


def test_import_operator_and_file_menu(blender_scene, flame_dir):
    assert bpy.ops.flame.import_head(filepath=str(flame_dir), n_shape=3, n_expression=2) == {"FINISHED"}
    obj = bpy.context.active_object
    assert obj.flame.is_head and obj.flame.n_shape == 3
    draw_functions = [f.__name__ for f in bpy.types.TOPBAR_MT_file_import.draw._draw_funcs]
    assert "menu_import" in draw_functions


def test_parameters_round_trip_and_exactness(small_head, flame_reference, evaluated_vertices):
    params = FlameParameters.random(np.random.default_rng(3), 10, 5)
    set_parameters(small_head, params)
    got = get_parameters(small_head)
    assert got.allclose(params, atol=1e-6)
    bpy.context.view_layer.update()
    error = np.abs(evaluated_vertices(small_head) - flame_reference(got)).max()
    assert error < TOLERANCE


def test_set_parameters_rejects_what_the_head_cannot_hold(small_head):
    too_many = FlameParameters.zeros(20, 5)
    too_many.shape[15] = 1.0
    with pytest.raises(ValueError, match="past the 10"):
        set_parameters(small_head, too_many)
    too_big = FlameParameters.zeros(10, 5)
    too_big.expression[0] = 11.0
    with pytest.raises(ValueError, match="±10"):
        set_parameters(small_head, too_big)


def test_reset_randomize_load_save_operators(small_head, tmp_path, flame_reference, evaluated_vertices):
    bpy.context.view_layer.objects.active = small_head
    assert bpy.ops.flame.randomize_parameters(seed=7, random_pose=False) == {"FINISHED"}
    first = get_parameters(small_head)
    assert np.any(first.shape != 0) and np.all(first.jaw_pose == 0)
    bpy.ops.flame.reset_parameters()
    assert get_parameters(small_head).allclose(FlameParameters.zeros(10, 5))
    bpy.ops.flame.randomize_parameters(seed=7, random_pose=False)
    assert get_parameters(small_head).allclose(first)
    bpy.ops.flame.randomize_parameters(seed=8, shape_sigma=2.0)
    params = get_parameters(small_head)
    for suffix in (".npz", ".json"):
        path = tmp_path / f"head{suffix}"
        assert bpy.ops.flame.save_parameters(filepath=str(path)) == {"FINISHED"}
        bpy.ops.flame.reset_parameters()
        assert bpy.ops.flame.load_parameters(filepath=str(path)) == {"FINISHED"}
        assert get_parameters(small_head).allclose(params, atol=1e-6)
    bpy.context.view_layer.update()
    assert np.abs(evaluated_vertices(small_head) - flame_reference(params)).max() < TOLERANCE


class _Payload:
    """Pickles to a call of os.system: loading it must not run it."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("case", ["missing", "not_flame", "malicious", "bad_params"])
def test_bad_input_leaves_the_scene_unchanged(blender_scene, flame_dir, tmp_path, case):
    marker = tmp_path / "pwned"
    path = tmp_path / "model.pkl"
    if case == "missing":
        path = tmp_path / "no_such_folder"
    elif case == "not_flame":
        path.write_bytes(pickle.dumps({"hello": np.zeros(3)}, protocol=2))
    elif case == "malicious":
        path.write_bytes(pickle.dumps({"v_template": _Payload(marker)}, protocol=2))
    else:
        path = flame_dir
    before = data_counts()
    if case == "bad_params":  # the operator's limits stop this; the function says why
        with pytest.raises(ValueError, match="the model has 300 and 100"):
            import_head(blender_scene, path, n_shape=301)
        with pytest.raises(RuntimeError, match="at least one"):
            bpy.ops.flame.import_head(filepath=str(path), n_shape=0, n_expression=0)
    else:
        with pytest.raises(RuntimeError) as error:
            bpy.ops.flame.import_head(filepath=str(path))
        message = str(error.value)
        assert "FLAME import failed" in message and path.name in message
    assert data_counts() == before
    assert not marker.exists()


def test_several_heads_in_one_scene(blender_scene, flame_dir, flame_reference, evaluated_vertices):
    heads = [import_head(blender_scene, flame_dir, 6, 4, name=f"head{i}") for i in range(3)]
    params = [FlameParameters.random(np.random.default_rng(i), 6, 4) for i in range(3)]
    for obj, p in zip(heads, params, strict=True):
        set_parameters(obj, p)
    bpy.context.view_layer.update()
    for obj, p in zip(heads, params, strict=True):
        assert np.abs(evaluated_vertices(obj) - flame_reference(p)).max() < TOLERANCE
    assert len({obj.data.name for obj in heads}) == 3


def test_deleting_a_head_while_handlers_run_raises_nothing(small_head, capfd):
    obj = small_head
    obj.flame.jaw_pose = (0.2, 0.0, 0.0)
    obj.keyframe_insert("flame.jaw_pose", frame=1)
    obj.flame.jaw_pose = (0.0, 0.0, 0.0)
    obj.keyframe_insert("flame.jaw_pose", frame=5)
    name = obj.name

    def delete_head(scene, depsgraph=None):
        head = bpy.data.objects.get(name)
        if head is not None:
            bpy.data.objects.remove(head)

    bpy.app.handlers.frame_change_post.insert(0, delete_head)
    try:
        bpy.context.scene.frame_set(3)
        bpy.context.scene.frame_set(4)
    finally:
        bpy.app.handlers.frame_change_post.remove(delete_head)
    from flame_blender.blender import head

    assert head.safe_update(obj) is False  # a stale reference to the deleted head
    assert "Error" not in capfd.readouterr().err


def _extension_leftovers() -> list[str]:
    leftovers = [name for name in dir(bpy.types) if name.startswith(("FLAME_", "FlamePreferences", "FlameObject", "FlameScene"))]
    leftovers += [f"Object.{n}" for n in ("flame",) if hasattr(bpy.types.Object, n)]
    leftovers += [f"Scene.{n}" for n in ("flame_settings",) if hasattr(bpy.types.Scene, n)]
    for event in ("depsgraph_update_post", "frame_change_pre", "frame_change_post", "undo_post", "redo_post", "load_post"):
        leftovers += [
            f"{event}:{h.__name__}" for h in getattr(bpy.app.handlers, event)
            if getattr(h, "__module__", "").startswith("flame_blender")
        ]
    from flame_blender.blender import handlers

    if bpy.app.timers.is_registered(handlers._update_heads_after_enable):
        leftovers.append("timer")
    return leftovers


def test_register_and_unregister_are_idempotent_and_complete(blender_scene):
    assert _extension_leftovers()  # registered by the fixture
    try:
        flame_blender_layer.unregister()
        flame_blender_layer.unregister()
        assert _extension_leftovers() == []
    finally:
        flame_blender_layer.register()
        flame_blender_layer.register()
    handlers = [h for h in bpy.app.handlers.frame_change_post if h.__module__.startswith("flame_blender")]
    assert len(handlers) == 1
    assert bpy.types.FLAME_PT_head.is_registered and hasattr(bpy.types.Object, "flame")


def test_panel_and_preferences(small_head, flame_reference, evaluated_vertices):
    from flame_blender.blender import panel, preferences, runtime

    context = bpy.context
    context.view_layer.objects.active = small_head
    assert panel.FLAME_PT_pose.poll(context)
    prefs = preferences.get_preferences()
    assert prefs is not None and prefs.backend == "AUTO"
    try:
        prefs.backend = "NUMPY"
        small_head.flame.jaw_pose = (0.1, 0.0, 0.0)
        assert runtime.backend_in_use_label().startswith("NumPy")
        bpy.context.view_layer.update()
        assert np.abs(evaluated_vertices(small_head) - flame_reference(get_parameters(small_head))).max() < TOLERANCE
        prefs.backend = "TORCH_CUDA"  # no GPU on the test machines: falls back, and says so
        small_head.flame.jaw_pose = (0.2, 0.0, 0.0)
        try:
            import torch
        except ImportError:  # a stock Blender (the bpy 4.x runs) has no PyTorch
            torch = None
        if torch is None or not torch.cuda.is_available():
            assert "unavailable" in runtime.backend_in_use_label()
        bpy.context.view_layer.update()
        assert np.abs(evaluated_vertices(small_head) - flame_reference(get_parameters(small_head))).max() < TOLERANCE
    finally:
        prefs.backend = "AUTO"
