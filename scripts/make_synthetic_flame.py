"""Write a complete synthetic FLAME folder: ``python scripts/make_synthetic_flame.py OUT_DIR
[--seed S] [--texture-resolution R]`` (same as ``python -m flame_blender.core.synthetic``)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flame_blender.core.synthetic.__main__ import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
