"""``python -m flame_blender.core.synthetic OUT_DIR [--seed S] [--texture-resolution R]``."""

from __future__ import annotations

import argparse
import sys

from .files import write_synthetic_flame


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m flame_blender.core.synthetic",
        description="Write a complete synthetic FLAME folder (every file format).",
    )
    parser.add_argument("out_dir", help="folder to write (created if missing)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--texture-resolution", type=int, default=64,
                        help="texture size in pixels (default 64; the real files use 512)")
    args = parser.parse_args(argv)
    out = write_synthetic_flame(args.out_dir, seed=args.seed,
                                texture_resolution=args.texture_resolution)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
