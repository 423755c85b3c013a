"""Export a FLAME head as a native rig (glTF/GLB, FBX, Alembic, USD) from the command line.

Runs inside Blender or under the ``bpy`` module, with the same arguments::

    blender --background --python-exit-code 1 --python scripts/export_head.py -- \\
        --params face.npz --out head.glb
    python scripts/export_head.py --sequence tracked.npz --fps 30 --out head_unity.fbx --format FBX_UNITY

``--params`` is one parameter set (.npz or .json: one frame); ``--sequence`` is one set a frame
(.jsonl, .json list, or .npz with a leading frame axis). The format follows the output's
extension unless ``--format`` is given (.fbx means FBX_UNITY). ``--blend`` also saves the rigged
scene, which plays and renders without this extension.

Exit status: 0 written, 2 bad input (nothing written).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from script_support import add_repository_to_path, import_package, script_arguments  # noqa: E402

FORMAT_BY_EXTENSION = {".glb": "GLB", ".gltf": "GLTF", ".fbx": "FBX_UNITY", ".abc": "ABC",
                       ".usd": "USD", ".usdc": "USD", ".usda": "USD"}



def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="export_head.py", description="Export a FLAME head as a native rig.")
    parser.add_argument("--flame-dir", type=Path, default=None, help="FLAME folder (default: the built-in synthetic model)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--params", type=Path, help="one parameter set: .npz or .json")
    source.add_argument("--sequence", type=Path, help="one parameter set a frame: .jsonl, .json or .npz")
    parser.add_argument("--out", type=Path, required=True, help="output file (.glb .gltf .fbx .abc .usdc)")
    parser.add_argument("--format", type=str.upper, default=None,
                        choices=("GLB", "GLTF", "FBX_UNITY", "FBX_UNREAL", "ABC", "USD"))
    parser.add_argument("--fps", type=int, default=24, help="frame rate of the sequence (default 24)")
    parser.add_argument("--n-expression", type=int, default=100, help="expression components (default 100)")
    parser.add_argument("--identity-as-shape-keys", action="store_true",
                        help="keep identity as shape keys instead of baking it into the mesh")
    parser.add_argument("--blend", type=Path, default=None, help="also save the rigged scene here")
    return parser



def export_head(package, flame_dir, sequence, out: Path, file_format: str, fps: int = 24,
                n_expression: int = 100, identity_as_shape_keys: bool = False, blend: Path | None = None) -> Path:
    """Build a head in an empty scene, key ``sequence`` from frame 1, rig it and export it."""
    import importlib

    import bpy

    core = importlib.import_module(f"{package.__name__}.core")
    blender = importlib.import_module(f"{package.__name__}.blender")
    rig = importlib.import_module(f"{package.__name__}.blender.rig")
    rig_export = importlib.import_module(f"{package.__name__}.blender.rig_export")
    head_animation = importlib.import_module(f"{package.__name__}.blender.head_animation")
    rig_export.check_writable(out)  # before any work
    if blend is not None:
        rig_export.check_writable(blend)
    n_shape = max(p.n_shape for p in sequence)
    bpy.ops.wm.read_homefile(use_empty=True)
    scene = bpy.context.scene
    scene.render.fps = fps
    scene.frame_start, scene.frame_end = 1, len(sequence)
    head = blender.import_head(bpy.context, flame_dir or core.builtin_flame_dir(),
                               n_shape=max(n_shape, 1), n_expression=n_expression)
    head_animation.animate_head(head, sequence, first_frame=1)
    armature, _ = rig.make_rig(bpy.context, head, bake="FRAME_RANGE", keep_live=False,
                               identity_as_shape_keys=identity_as_shape_keys)
    written = rig_export.export_rig(armature, out, file_format)
    if blend is not None:
        bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    return written


def main(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(script_arguments(argv))
    add_repository_to_path()
    file_format = args.format or FORMAT_BY_EXTENSION.get(args.out.suffix.lower())
    if file_format is None:
        parser.error(f"cannot tell the format from {args.out.name!r}; pass --format")
    package, registered = import_package()
    try:
        import importlib

        core = importlib.import_module(f"{package.__name__}.core")
        parameters = importlib.import_module(f"{package.__name__}.core.model.parameters")
        try:
            if args.sequence is not None:
                sequence = parameters.load_parameter_sequence(args.sequence)
            elif args.params is not None:
                sequence = [core.load_parameters(args.params)]
            else:
                sequence = [core.FlameParameters.zeros(0, args.n_expression)]
            out = export_head(package, args.flame_dir, sequence, args.out, file_format, args.fps,
                              args.n_expression, args.identity_as_shape_keys, args.blend)
        except (core.FlameFileError, core.FlameParameterError, OSError, RuntimeError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        print(f"wrote {out} ({file_format}, {len(sequence)} frames)")
        return 0
    finally:
        if registered:
            package.unregister()


def exit_now(status: int) -> None:
    """Exit with ``status`` (the bpy 4.x module can crash at interpreter shutdown; see
    render_batch.py)."""
    sys.stdout.flush()
    sys.stderr.flush()
    bpy = sys.modules.get("bpy")
    if bpy is not None and not bpy.app.binary_path and bpy.app.version < (5, 0, 0):
        os._exit(status)
    sys.exit(status)


if __name__ == "__main__":
    exit_now(main(sys.argv))
