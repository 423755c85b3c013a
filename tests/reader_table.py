"""Reader name -> public reader function, for the hostile-file and fuzz tests (no side effects:
the child runners set their limits before importing this)."""

from __future__ import annotations

from flame_blender.core.io import (
    landmark_io,
    model_io,
    numpy_files,
    ply_io,
    safe_pickle,
    texture_io,
    torch_zip,
)
from flame_blender.core.model import parameters
from flame_blender.core.sequences import load_sequence

READERS = {
    "pickle": safe_pickle.load_pickle,
    "model": model_io.load_flame,
    "masks": model_io.load_flame_masks,
    "npy": numpy_files.load_npy,
    "npz": numpy_files.load_npz,
    "static": landmark_io.load_static_landmark_embedding,
    "dynamic": landmark_io.load_dynamic_landmark_embedding,
    "deca": landmark_io.load_deca_landmark_embedding,
    "vhap": landmark_io.load_vhap_landmark_embedding,
    "mediapipe": landmark_io.load_mediapipe_landmark_embedding,
    "texture": texture_io.load_texture_model,
    "obj": texture_io.load_template_mesh,
    "ply": ply_io.load_ply_mesh,
    "torch": torch_zip.load_torch_zip,
    "sequence": load_sequence,
    "parameters": parameters.load_parameters,
    "parameter sequence": parameters.load_parameter_sequence,
}
