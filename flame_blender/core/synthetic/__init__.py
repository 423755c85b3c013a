"""Synthetic FLAME files: a made-up head in exactly the formats of the real FLAME downloads.

The real FLAME files are licence-restricted, so tests and the demo run on these. The head has
FLAME's topology counts (5023 vertices, 9976 triangles, eyeballs at 3931..4476 and 4477..5022),
joints, skinning weights, 300 identity and 100 expression directions, pose correctives, masks,
landmark embeddings and albedo models; every file is written byte for byte the way the real
one is (Python 2 pickles with chumpy and scipy objects, legacy torch tensors, ...), without
needing chumpy, scipy or torch.

Example::

    from flame_blender.core.synthetic import write_synthetic_flame
    folder = write_synthetic_flame("/tmp/flame", seed=0)      # then load_flame(folder)
"""

from __future__ import annotations

from .files import FILE_NAMES, SYNTHETIC_VERSION, builtin_flame_dir, write_synthetic_flame
from .model import synthetic_flame_model

__all__ = [
    "FILE_NAMES",
    "SYNTHETIC_VERSION",
    "builtin_flame_dir",
    "synthetic_flame_model",
    "write_synthetic_flame",
]
