"""Tracked FLAME sequences: read what face trackers write, in FLAME's conventions.

``load_sequence(path, format="auto")`` returns a :class:`FlameSequence` (per-frame parameters,
frame ids, optional OpenCV cameras, offsets, extra blendshapes, fps). ``save_sequence`` writes
one as VHAP-layout ``.npz`` or this project's ``.jsonl``/``.npz``. No bpy, no torch.
"""

from .conventions import euler_to_matrix, rotation_6d_to_matrix, to_axis_angle
from .detect import FORMATS, detect_format, load_sequence
from .export import save_sequence, save_vertices
from .sequence import FlameSequence, SequenceCameras

__all__ = [
    "FORMATS", "FlameSequence", "SequenceCameras", "detect_format", "euler_to_matrix",
    "load_sequence", "rotation_6d_to_matrix", "save_sequence", "save_vertices", "to_axis_angle",
]
