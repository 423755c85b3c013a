"""The render layer inside Blender: device choice, studio, albedo material, operators, panel."""

from __future__ import annotations

from pathlib import Path

import bpy  # noqa: F401  (first: Blender's own modules, e.g. addon_utils, come with it)
import numpy as np
import pytest

from flame_blender.core.render.camera import (
    camera2pixel,
    intrinsics_from_blender,
    world_to_camera_from_blender,
)


def test_device_choice_falls_back_to_the_cpu_with_a_message(blender_scene):
    from flame_blender.blender.render import device

    found = device.available_gpu_backends()
    auto = device.select_cycles_device(blender_scene, "AUTO")
    if not found:
        assert auto.backend == "CPU" and auto.fell_back
        assert "CPU" in auto.message and "No GPU" in auto.message
        assert blender_scene.cycles.device == "CPU"
    else:  # a GPU machine: the first backend in the preferred order wins
        first = next(b for b in device.GPU_BACKENDS if b in found)
        assert auto.backend == first and blender_scene.cycles.device == "GPU"
    for name in device.GPU_BACKENDS:
        choice = device.select_cycles_device(blender_scene, name)  # never raises
        assert choice.backend in (name, "CPU")
        assert choice.message
    cpu = device.select_cycles_device(blender_scene, "cpu")
    assert cpu.backend == "CPU" and not cpu.fell_back
    with pytest.raises(ValueError, match="unknown Cycles device"):
        device.select_cycles_device(blender_scene, "TPU")


def test_preferences_offer_the_cycles_device(blender_addon):
    from flame_blender.blender.preferences import get_preferences

    prefs = get_preferences()
    assert prefs.cycles_device == "AUTO"
    items = [item.identifier for item in prefs.bl_rna.properties["cycles_device"].enum_items]
    assert items == ["AUTO", "OPTIX", "CUDA", "HIP", "ONEAPI", "METAL", "CPU"]


def test_studio_frames_the_head(blender_addon, small_head):
    assert blender_addon is bpy
    scene = bpy.context.scene
    bpy.context.view_layer.objects.active = small_head
    result = bpy.ops.flame.setup_studio(focal_length=85.0, distance=0.9, azimuth=20.0, transparent=True)
    assert result == {"FINISHED"}
    camera = scene.camera
    assert camera is not None and camera.data.lens == pytest.approx(85.0)
    assert scene.render.film_transparent
    lights = [obj for obj in scene.objects if obj.type == "LIGHT"]
    assert len(lights) == 3 and scene.world is not None
    # Running it again updates, never duplicates.
    bpy.ops.flame.setup_studio(focal_length=50.0, distance=0.6)
    assert len([obj for obj in scene.objects if obj.type in ("LIGHT", "CAMERA")]) == 4
    assert scene.camera.data.lens == pytest.approx(50.0)
    # The head's bounding-box centre projects to the image centre, at the asked distance.
    from flame_blender.blender.render.studio import evaluated_vertices, head_centre

    centre = head_centre(evaluated_vertices(small_head))
    width, height = scene.render.resolution_x, scene.render.resolution_y
    data = scene.camera.data
    fx, fy, cx, cy = intrinsics_from_blender(
        data.lens, data.sensor_width, data.sensor_height, data.sensor_fit, width, height
    )
    world_to_camera = world_to_camera_from_blender(np.array(scene.camera.matrix_world)) @ np.array(
        small_head.matrix_world
    )
    point = world_to_camera[:3, :3] @ centre + world_to_camera[:3, 3]
    assert point[2] == pytest.approx(0.6, abs=1e-5)
    assert np.allclose(camera2pixel(point, fx, fy, cx, cy), (cx, cy), atol=1e-3)


@pytest.mark.parametrize("resolution", [(1920, 1080), (1080, 1920), (512, 512)])
def test_studio_defaults_frame_the_whole_head_at_any_aspect_ratio(blender_addon, small_head, resolution):
    from flame_blender.blender.render.studio import evaluated_vertices

    scene = bpy.context.scene
    scene.render.resolution_x, scene.render.resolution_y = resolution
    bpy.context.view_layer.objects.active = small_head
    assert bpy.ops.flame.setup_studio() == {"FINISHED"}
    data = scene.camera.data
    width, height = resolution
    fx, fy, cx, cy = intrinsics_from_blender(
        data.lens, data.sensor_width, data.sensor_height, data.sensor_fit, width, height
    )
    world_to_camera = world_to_camera_from_blender(np.array(scene.camera.matrix_world)) @ np.array(
        small_head.matrix_world
    )
    vertices = evaluated_vertices(small_head)
    points = vertices @ world_to_camera[:3, :3].T + world_to_camera[:3, 3]
    pixels = camera2pixel(points, fx, fy, cx, cy)
    # Every vertex lands inside the picture (the head is neither cropped nor tiny).
    assert pixels.min(axis=0).min() > 0 and (pixels.max(axis=0) < (width, height)).all()
    extent = (pixels.max(axis=0) - pixels.min(axis=0)) / min(width, height)
    assert extent.max() > 0.5


def test_render_operator_renders_a_still_and_reports_the_device(blender_addon, small_head, tmp_path):
    assert blender_addon is bpy
    scene = bpy.context.scene
    bpy.context.view_layer.objects.active = small_head
    bpy.ops.flame.setup_studio()
    scene.render.resolution_x, scene.render.resolution_y = 32, 24
    path = tmp_path / "still.png"
    assert bpy.ops.flame.render(filepath=str(path), samples=1) == {"FINISHED"}
    from flame_blender.core.render.png import read_png

    image = read_png(path)
    assert image.shape == (24, 32, 4)
    assert image[..., :3].std() > 0  # something was drawn
    assert scene.flame_render.last_device  # the device actually used is shown
    assert bpy.ops.flame.render.poll()


def test_albedo_image_rows_are_flipped_into_blender(blender_addon, small_head, flame_dir):
    from flame_blender import core
    from flame_blender.blender.render import material

    texture_file = material.find_texture_model_file(flame_dir)
    assert texture_file is not None
    model = core.load_texture_model(texture_file)
    coefficients = np.linspace(-1.0, 1.0, model.n_components)
    mat = material.ensure_head_material(small_head, model, coefficients)
    image = mat.node_tree.nodes["FLAME Albedo"].image
    width, height = image.size
    pixels = np.empty(width * height * 4, np.float32)
    image.pixels.foreach_get(pixels)
    blender_rows = pixels.reshape(height, width, 4)[:, :, :3]
    expected = np.clip(model.image(coefficients), 0, 1)
    tolerance = 1e-6 if image.is_float else 1.0 / 255 + 1e-6
    assert np.abs(blender_rows[::-1] - expected).max() <= tolerance  # Blender's row 0 = bottom
    assert small_head.data.materials[0] == mat
    # Without a texture model: a plain skin colour, no image node.
    plain = material.ensure_head_material(small_head, None)
    assert "FLAME Albedo" not in plain.node_tree.nodes
    base = plain.node_tree.nodes["Principled BSDF"].inputs["Base Color"].default_value
    assert tuple(base) == pytest.approx(material.SKIN_COLOUR)


def test_render_panel_is_a_sub_panel_of_the_flame_tab(blender_addon):
    assert blender_addon is bpy
    panel = bpy.types.FLAME_PT_render
    assert panel.bl_category == "FLAME" and panel.bl_parent_id == "FLAME_PT_head"
    assert hasattr(bpy.types.Scene, "flame_render")


@pytest.fixture
def head_with_broken_albedo(blender_scene, flame_dir, tmp_path):
    """The active head of a FLAME folder whose AlbedoMM file is not an npz."""
    import shutil

    from flame_blender.blender import import_head

    folder = tmp_path / "flame"
    shutil.copytree(flame_dir, folder)
    (folder / "albedoModel2020_FLAME_albedoPart.npz").write_bytes(b"not an npz")
    head = import_head(blender_scene, folder, n_shape=2, n_expression=1)
    bpy.context.view_layer.objects.active = head
    return head


def test_studio_with_a_broken_texture_reports_and_changes_nothing(blender_scene, head_with_broken_albedo):
    objects_before = {obj.name for obj in bpy.data.objects}
    materials_before = {mat.name for mat in bpy.data.materials}
    with pytest.raises(RuntimeError, match="albedoModel2020"):
        bpy.ops.flame.setup_studio()  # the operator's ERROR report surfaces as RuntimeError
    assert {obj.name for obj in bpy.data.objects} == objects_before
    assert {mat.name for mat in bpy.data.materials} == materials_before
    assert blender_scene.camera is None


def test_apply_albedo_operator_shades_with_seeded_coefficients_and_survives_saving(
    blender_addon, small_head, flame_dir, tmp_path
):
    from flame_blender import core
    from flame_blender.blender.render import material

    bpy.context.view_layer.objects.active = small_head
    assert bpy.ops.flame.apply_albedo(seed=3, sigma=1.0) == {"FINISHED"}
    model = core.load_texture_model(material.find_texture_model_file(flame_dir))
    coefficients = np.random.default_rng(3).standard_normal(model.n_components)
    expected = np.clip(model.image(coefficients), 0, 1)
    assert np.abs(expected - np.clip(model.image(None), 0, 1)).max() > 0.01  # seed matters

    def albedo_rows(head):
        image = head.data.materials[0].node_tree.nodes["FLAME Albedo"].image
        width, height = image.size
        pixels = np.empty(width * height * 4, np.float32)
        image.pixels.foreach_get(pixels)
        return pixels.reshape(height, width, 4)[::-1, :, :3], image

    rows, image = albedo_rows(small_head)
    tolerance = 1e-6 if image.is_float else 1.0 / 255 + 1e-6
    assert np.abs(rows - expected).max() <= tolerance
    assert image.packed_file is not None

    # The .blend keeps the albedo: generated images are saved empty unless packed.
    path = tmp_path / "albedo.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(path))
    bpy.ops.wm.open_mainfile(filepath=str(path))
    reopened = bpy.data.objects["FLAME"]
    rows, _ = albedo_rows(reopened)
    assert np.abs(rows - expected).max() <= tolerance


def test_apply_albedo_with_a_broken_texture_changes_nothing(head_with_broken_albedo):
    head = head_with_broken_albedo
    materials_before = {mat.name for mat in bpy.data.materials}
    images_before = {image.name for image in bpy.data.images}
    with pytest.raises(RuntimeError, match="albedoModel2020"):
        bpy.ops.flame.apply_albedo(seed=1, sigma=1.0)
    assert {mat.name for mat in bpy.data.materials} == materials_before
    assert {image.name for image in bpy.data.images} == images_before
    assert len(head.data.materials) == 0


# -- issue 13, bug 1: Render Still in an unsaved file, and from Python ------------------------


def _studio_head(small_head):
    scene = bpy.context.scene
    bpy.context.view_layer.objects.active = small_head
    bpy.ops.flame.setup_studio()
    scene.render.resolution_x, scene.render.resolution_y = 16, 12
    scene.flame_render.samples = 1
    return scene


def test_render_still_in_an_unsaved_file_refuses_before_rendering(blender_addon, small_head, tmp_path):
    scene = _studio_head(small_head)
    assert not bpy.data.filepath and scene.flame_render.filepath.startswith("//")
    renders = []

    def count(*args):
        renders.append(1)

    bpy.app.handlers.render_pre.append(count)
    try:
        with pytest.raises(RuntimeError) as error:
            bpy.ops.flame.render()
        assert "not saved" in str(error.value) and "Traceback" not in str(error.value)
        assert renders == []  # refused before spending the render
        # The clear choice: the temporary folder, reported with the full path written.
        assert bpy.ops.flame.render(output_choice="TEMP") == {"FINISHED"}
        import tempfile

        written = Path(tempfile.gettempdir()) / "flame_render.png"
        assert written.is_file() and len(renders) == 1
        written.unlink()
    finally:
        bpy.app.handlers.render_pre.remove(count)


def test_render_still_from_python_saves_to_the_panel_path(blender_addon, small_head, tmp_path):
    scene = _studio_head(small_head)
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "scene.blend"))
    scene = bpy.context.scene
    assert bpy.ops.flame.render() == {"FINISHED"}  # no arguments: the panel's output and samples
    from flame_blender.core.render.png import read_png

    assert read_png(tmp_path / "flame_render.png").shape == (12, 16, 4)
    assert scene.flame_render.last_device
