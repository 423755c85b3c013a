"""Camera conventions, checked against Blender's own projection (the real bpy)."""

from __future__ import annotations

import numpy as np
import pytest

from flame_blender.core.render.camera import (
    camera2pixel,
    intrinsic_matrix,
    intrinsics_from_blender,
    pixel2camera,
    world_to_camera_from_blender,
)


def test_projection_convention() -> None:
    fx, fy, cx, cy = 500.0, 400.0, 320.0, 240.0
    # on the optical axis -> principal point; +x right, +y down
    assert camera2pixel(np.array([0.0, 0.0, 2.0]), fx, fy, cx, cy).tolist() == [320.0, 240.0]
    u, v = camera2pixel(np.array([0.1, 0.2, 1.0]), fx, fy, cx, cy)
    assert (u, v) == (370.0, 320.0)
    k = intrinsic_matrix(fx, fy, cx, cy)
    homogeneous = k @ np.array([0.1, 0.2, 1.0])
    assert np.allclose(homogeneous[:2] / homogeneous[2], [u, v])


def test_pixel2camera_inverts_camera2pixel_in_numpy_and_torch() -> None:
    rng = np.random.default_rng(0)
    points = np.column_stack([rng.normal(size=(50, 2)), rng.uniform(0.5, 3.0, 50)]).reshape(5, 10, 3)
    pixels = camera2pixel(points, 800.0, 810.0, 255.5, 260.0)
    assert pixels.shape == (5, 10, 2)
    back = pixel2camera(pixels, points[..., 2], 800.0, 810.0, 255.5, 260.0)
    assert np.abs(back - points).max() < 1e-12
    torch = pytest.importorskip("torch")  # a stock Blender (the bpy 4.x runs) has none
    tensor = torch.tensor(points, requires_grad=True)
    projected = camera2pixel(tensor, 800.0, 810.0, 255.5, 260.0)
    assert torch.allclose(projected, torch.from_numpy(pixels))
    projected.sum().backward()
    assert torch.isfinite(tensor.grad).all()


CASES = [
    # lens, sensor w, sensor h, fit, width, height, shift x, shift y, pixel aspect x, y
    (50.0, 36.0, 24.0, "AUTO", 640, 480, 0.0, 0.0, 1.0, 1.0),
    (35.0, 36.0, 24.0, "AUTO", 480, 640, 0.1, -0.05, 1.0, 1.0),
    (85.0, 36.0, 24.0, "HORIZONTAL", 512, 512, 0.0, 0.2, 1.0, 1.0),
    (40.0, 30.0, 20.0, "VERTICAL", 800, 400, -0.15, 0.1, 1.0, 1.0),
    (50.0, 36.0, 24.0, "AUTO", 640, 480, 0.05, 0.05, 2.0, 1.0),
    (60.0, 36.0, 30.0, "VERTICAL", 300, 500, 0.0, 0.0, 1.0, 1.5),
]


@pytest.mark.parametrize("case", CASES, ids=[f"{c[3]}-{c[4]}x{c[5]}-aspect{c[8]}:{c[9]}" for c in CASES])
def test_intrinsics_and_extrinsics_match_blenders_projection(case: tuple) -> None:
    import bpy
    from bpy_extras.object_utils import world_to_camera_view
    from mathutils import Euler, Vector

    lens, sensor_w, sensor_h, fit, width, height, shift_x, shift_y, aspect_x, aspect_y = case
    scene = bpy.data.scenes.new("camera_convention_test")
    try:
        scene.render.resolution_x, scene.render.resolution_y = width, height
        scene.render.resolution_percentage = 100
        scene.render.pixel_aspect_x, scene.render.pixel_aspect_y = aspect_x, aspect_y
        data = bpy.data.cameras.new("camera_convention_test")
        data.lens, data.sensor_width, data.sensor_height, data.sensor_fit = lens, sensor_w, sensor_h, fit
        data.shift_x, data.shift_y = shift_x, shift_y
        camera = bpy.data.objects.new("camera_convention_test", data)
        scene.collection.objects.link(camera)
        scene.camera = camera
        camera.location = (0.3, -2.5, 0.4)
        camera.rotation_euler = Euler((1.45, 0.1, 0.2), "XYZ")
        camera.scale = (1.0, 2.0, 0.5)  # the renderer ignores camera scale; so must we
        scene.view_layers[0].update()

        fx, fy, cx, cy = intrinsics_from_blender(
            lens, sensor_w, sensor_h, fit, width, height, shift_x, shift_y, aspect_x / aspect_y
        )
        world_to_camera = world_to_camera_from_blender(np.array(camera.matrix_world))
        rng = np.random.default_rng(0)
        points = rng.normal(size=(20, 3)) * 0.3
        for point in points:
            ndc = world_to_camera_view(scene, camera, Vector(point))
            expected = np.array([ndc.x * width, (1.0 - ndc.y) * height])
            in_camera = world_to_camera[:3, :3] @ point + world_to_camera[:3, 3]
            assert in_camera[2] > 0
            assert np.abs(camera2pixel(in_camera, fx, fy, cx, cy) - expected).max() < 1e-3
            assert abs(in_camera[2] - ndc.z) < 1e-5
    finally:
        bpy.data.objects.remove(bpy.data.objects["camera_convention_test"])
        bpy.data.cameras.remove(bpy.data.cameras["camera_convention_test"])
        bpy.data.scenes.remove(scene)


def test_bad_camera_arguments() -> None:
    with pytest.raises(ValueError, match="sensor_fit 'DIAGONAL'"):
        intrinsics_from_blender(50, 36, 24, "DIAGONAL", 640, 480)
    with pytest.raises(ValueError, match="3 values"):
        camera2pixel(np.zeros((4, 2)), 1, 1, 0, 0)
    with pytest.raises(ValueError, match="4x4"):
        world_to_camera_from_blender(np.eye(3))
