"""Write a synthetic tracked sequence in VHAP's export layout (for ``make demo-sequence``).

    python scripts/make_synthetic_sequence.py OUT_FOLDER [--frames 24] [--seed 0]

OUT_FOLDER gets ``flame_param/{timestep:05d}.npz`` (VHAP's per-timestep keys: translation,
rotation, neck_pose, jaw_pose, eyes_pose (1, 6), shape (300,), expr (1, 100)),
``canonical_flame_param.npz`` and ``transforms.json`` with one OpenGL camera-to-world
``transform_matrix`` and ``fl_x, fl_y, cx, cy, w, h`` per frame record, as
vhap/export_as_nerf_dataset.py writes them. The head nods, turns, opens its mouth and changes
expression; the camera stays 0.9 m in front of it.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=512, help="image width and height in pixels")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    out: Path = args.out
    (out / "flame_param").mkdir(parents=True, exist_ok=True)
    f32 = np.float32
    shape = (rng.standard_normal(300) * 0.6).astype(f32)
    expression_basis = rng.standard_normal((2, 100)).astype(f32) * 0.8
    size = args.size
    focal = 2.2 * size  # a ~26 degree field of view: the head fills the middle of the image
    frames = []
    for t in range(args.frames):
        phase = 2.0 * math.pi * t / max(args.frames, 1)
        params = {
            "translation": np.array([[0.0, 0.0, 0.0]], f32),
            "rotation": np.array([[0.15 * math.sin(phase), 0.35 * math.sin(phase * 0.5), 0.0]], f32),
            "neck_pose": np.array([[0.05 * math.sin(phase), 0.0, 0.0]], f32),
            "jaw_pose": np.array([[0.12 * (1.0 - math.cos(phase)), 0.0, 0.0]], f32),
            "eyes_pose": np.array([[0.0, 0.2 * math.sin(phase), 0.0] * 2], f32),
            "shape": shape,
            "expr": (math.sin(phase) * expression_basis[0] + math.cos(phase) * expression_basis[1])[None].astype(f32),
        }
        np.savez(out / "flame_param" / f"{t:05d}.npz", **params)
        c2w = np.eye(4)
        c2w[:3, 3] = (0.0, 0.02, 0.9)  # OpenGL camera looking down -z at the face
        frames.append({
            "timestep_index": t, "timestep_index_original": t, "timestep_id": f"frame_{t:05d}",
            "camera_index": 0, "camera_id": "0", "cx": size / 2, "cy": size / 2, "fl_x": focal, "fl_y": focal,
            "h": size, "w": size, "camera_angle_x": 2 * math.atan(size / (2 * focal)),
            "camera_angle_y": 2 * math.atan(size / (2 * focal)), "transform_matrix": c2w.tolist(),
            "file_path": f"images/{t:05d}_00.png", "flame_param_path": f"flame_param/{t:05d}.npz",
        })
    db = {"frames": frames, "cx": size / 2, "cy": size / 2, "fl_x": focal, "fl_y": focal, "h": size, "w": size,
          "timestep_indices": list(range(args.frames)), "camera_indices": [0]}
    (out / "transforms.json").write_text(json.dumps(db, indent=4))
    np.savez(out / "canonical_flame_param.npz", shape=shape, jaw_pose=np.array([[0.3, 0.0, 0.0]]))
    print(f"wrote {args.frames} frames of a synthetic VHAP export to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
