"""FLAME without Blender: files, the forward pass, textures, landmarks, cameras, parameters.

Nothing under ``flame_blender.core`` imports bpy, so researchers can use it from their own
scripts. Names are imported lazily, so ``import flame_blender.core`` stays cheap and works
where torch is not installed (stock Blender); only touching ``FLAME`` needs torch.

Example::

    from flame_blender.core import FLAME, load_flame
    model = FLAME("~/FLAME2020", n_shape=100, n_expression=50)
    vertices = model(jaw_pose=torch.tensor([0.2, 0.0, 0.0]))   # (5023, 3)
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> module (relative to this package) that defines it
_EXPORTS = {
    # errors
    "FlameFileError": "errors",
    "UnsafePickleError": "errors",
    "FlameParameterError": "errors",
    # model files
    "load_flame": "model_io",
    "load_flame_masks": "model_io",
    "find_flame_model_file": "model_io",
    # landmark embeddings
    "LandmarkEmbedding": "landmark_io",
    "load_mediapipe_landmark_embedding": "landmark_io",
    "load_static_landmark_embedding": "landmark_io",
    "load_dynamic_landmark_embedding": "landmark_io",
    "load_deca_landmark_embedding": "landmark_io",
    "load_landmark_embeddings": "landmark_io",
    # textures and the template OBJ
    "TextureModel": "texture_io",
    "load_texture_model": "texture_io",
    "TemplateMesh": "texture_io",
    "load_template_mesh": "texture_io",
    # synthetic FLAME files for tests and the demo
    "write_synthetic_flame": "synthetic",
    "builtin_flame_dir": "synthetic",
    "synthetic_flame_model": "synthetic",
    # the forward pass
    "FLAME": "flame_torch",
    "FlameOutput": "flame_torch",
    "FlameNumpy": "flame_numpy",
    "create_backend": "backend",
    # cameras
    "camera2pixel": "camera",
    "pixel2camera": "camera",
    "intrinsic_matrix": "camera",
    "intrinsics_from_blender": "camera",
    "world_to_camera_from_blender": "camera",
    # the native rig (armature + shape keys) maths
    "RigModel": "rig",
    "build_rig_model": "rig",
    "rig_animation": "rig",
    # parameter sets
    "FlameParameters": "parameters",
    "load_parameters": "parameters",
    "save_parameters": "parameters",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module_name}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
