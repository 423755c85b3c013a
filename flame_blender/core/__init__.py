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
    "load_flame": "io.model_io",
    "load_flame_masks": "io.model_io",
    "find_flame_model_file": "io.model_io",
    # landmark embeddings
    "LandmarkEmbedding": "io.landmark_io",
    "load_mediapipe_landmark_embedding": "io.landmark_io",
    "load_static_landmark_embedding": "io.landmark_io",
    "load_dynamic_landmark_embedding": "io.landmark_io",
    "load_deca_landmark_embedding": "io.landmark_io",
    "load_landmark_embeddings": "io.landmark_io",
    "load_vhap_landmark_embedding": "io.landmark_io",
    # textures and the template OBJ
    "TextureModel": "io.texture_io",
    "load_texture_model": "io.texture_io",
    "TemplateMesh": "io.texture_io",
    "load_template_mesh": "io.texture_io",
    "load_ply_mesh": "io.ply_io",
    # synthetic FLAME files for tests and the demo
    "write_synthetic_flame": "synthetic",
    "builtin_flame_dir": "synthetic",
    "synthetic_flame_model": "synthetic",
    # the forward pass
    "FLAME": "model.flame_torch",
    "FlameOutput": "model.flame_torch",
    "FlameNumpy": "model.flame_numpy",
    "create_backend": "model.backend",
    # the forward pass written once (numpy or torch), and the inputs trackers add
    "lbs": "model.lbs",
    "add_teeth": "model.teeth",
    "teeth_uvs": "model.teeth",
    "find_extra_blendshapes": "io.extra_blendshapes",
    # cameras
    "camera2pixel": "render.camera",
    "pixel2camera": "render.camera",
    "intrinsic_matrix": "render.camera",
    "intrinsics_from_blender": "render.camera",
    "world_to_camera_from_blender": "render.camera",
    # the files beside a model: where extras are read, the head's UVs, albedo checks (issue 15)
    "extras_folder": "io.flame_folder",
    "absolute_path": "io.flame_folder",
    "find_head_uvs": "io.flame_folder",
    "albedo_problem": "io.flame_folder",
    # the native rig (armature + shape keys) maths
    "RigModel": "rig",
    "build_rig_model": "rig",
    "rig_animation": "rig",
    # parameter sets
    "FlameParameters": "model.parameters",
    "load_parameters": "model.parameters",
    "save_parameters": "model.parameters",
    # tracked sequences
    "FlameSequence": "sequences",
    "load_sequence": "sequences",
    "save_sequence": "sequences",
    # fitting to meshes, landmarks and scans (flame_blender.core.fitting)
    "FitModel": "fitting",
    "FitResult": "fitting",
    "fit_registered": "fitting",
    "fit_landmarks": "fitting",
    "fit_scan": "fitting",
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
