"""Tracked sequences in Blender (bpy), on the built-in synthetic 300+100 model.

    python benchmarks/sequence.py [--frames 1000]

Prints one table: importing a VHAP-layout file of ``--frames`` frames (300 identity + 100
expression + 15 pose values + translation) onto a head, exporting the per-frame vertices, and
playback of that sequence (100 expression and 18 pose channels animated) through
``scene.frame_set``, against Blender alone playing the same head's shape-key animation with the
extension's handlers and its pose-correction modifier out of the way, in the same run
(interleaved chunks; frames per second and CPU time per frame). Every played frame (or every
``--check-every``-th) is checked against the NumPy forward pass, so a fast but wrong playback
cannot pass.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
os.environ.setdefault("BLENDER_USER_RESOURCES", tempfile.mkdtemp(prefix="flame-bench-user-"))

import bpy  # noqa: E402, I001  (bpy first: it makes addon_utils importable)
import addon_utils  # noqa: E402
import numpy as np  # noqa: E402

from flame_blender.blender import handlers, import_head, pose_correction  # noqa: E402
from flame_blender.blender import runtime as blender_runtime  # noqa: E402
from flame_blender.blender.sequence_export import export_sequence  # noqa: E402
from flame_blender.blender.sequence_import import import_sequence  # noqa: E402
from flame_blender.core import FlameNumpy, builtin_flame_dir  # noqa: E402


def write_vhap_file(path: Path, frames: int) -> Path:
    """A VHAP ``save_result`` layout: float32 arrays, fixed shape (300,), string timestep ids."""
    rng = np.random.default_rng(0)
    f32 = np.float32
    np.savez(
        path,
        rotation=(rng.standard_normal((frames, 3)) * 0.1).astype(f32),
        translation=(rng.standard_normal((frames, 3)) * 0.01).astype(f32),
        neck_pose=(rng.standard_normal((frames, 3)) * 0.1).astype(f32),
        jaw_pose=(np.abs(rng.standard_normal((frames, 3))) * 0.1).astype(f32),
        eyes_pose=(rng.standard_normal((frames, 6)) * 0.1).astype(f32),
        shape=(rng.standard_normal(300) * 0.5).astype(f32),
        expr=(rng.standard_normal((frames, 100)) * 0.5).astype(f32),
        timestep_id=np.array([f"{i:05d}" for i in range(frames)]),
    )
    return path


def play(scene, frames: range) -> tuple[float, float]:
    """Frames per second (wall clock) and CPU milliseconds per frame of this process."""
    start, cpu = time.perf_counter(), time.process_time()
    for frame in frames:
        scene.frame_set(frame)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    return len(frames) / wall, 1000.0 * cpu / len(frames)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=1000)
    parser.add_argument("--check-every", type=int, default=1, help="check exactness every Nth frame")
    args = parser.parse_args(argv)
    addon_utils.enable("flame_blender", default_set=True)
    flame_dir = builtin_flame_dir()
    bpy.ops.wm.read_homefile(use_empty=True)
    scene = bpy.context.scene
    rows: list[tuple[str, str, str]] = []
    folder = Path(tempfile.mkdtemp(prefix="flame-bench-sequence-"))
    path = write_vhap_file(folder / "tracked_flame_params.npz", args.frames)

    head = import_head(bpy.context, flame_dir, name="bench")
    times = []
    for _ in range(3):
        bpy.context.view_layer.objects.active = head
        start = time.perf_counter()
        result = import_sequence(bpy.context, path, target="ACTIVE", fps=25.0)
        times.append(time.perf_counter() - start)
    rows.append((f"import {args.frames} frames (300 + 100 + 15 pose + transl), onto a head, median of 3",
                 f"{statistics.median(times):.3f} s", "<= 1.0 s"))
    start = time.perf_counter()
    export_sequence(head, scene, folder / "vertices.npz", "NPZ_VERTICES")
    rows.append((f"export {args.frames} frames of vertices (+ landmarks)", f"{time.perf_counter() - start:.3f} s", "<= 2.0 s"))

    # exactness of playback on every frame (untimed, played in order as playback does),
    # against the float64 NumPy forward pass of the file's values
    reference = FlameNumpy(flame_dir, n_shape=300, n_expression=100)
    buffer = np.empty(5023 * 3, dtype=np.float32)
    worst = 0.0
    checked = range(0, args.frames, args.check_every)
    for index in checked:
        scene.frame_set(result.frame_start + index)
        mesh = head.evaluated_get(bpy.context.evaluated_depsgraph_get()).data
        mesh.attributes["position"].data.foreach_get("vector", buffer)
        expected = reference.forward(**result.sequence.parameters(index).forward_kwargs())
        worst = max(worst, float(np.abs(buffer.reshape(-1, 3) - expected).max()))
    if worst > 1e-5:
        raise SystemExit(f"playback is not exact: max error {worst:.2e} m")

    # Interleaved chunks (each frame range played both ways, in alternating order), so load
    # from other processes hits both alike. Blender alone: only the shape-key animation, the
    # extension's handlers unregistered and the pose-correction modifier off (plain Blender).
    chunk = max(10, args.frames // 20)
    ours, alone = [], []
    action = head.animation_data.action
    modifier = head.modifiers.get(pose_correction.MODIFIER_NAME)

    def play_ours(frames: range) -> None:
        head.animation_data.action = action
        if modifier is not None:
            modifier.show_viewport = True
        scene.frame_set(frames[0] - 1)  # settle after the switch, untimed
        ours.append(play(scene, frames))

    def play_alone(frames: range) -> None:
        head.animation_data.action = None
        if modifier is not None:
            modifier.show_viewport = False
        handlers.unregister_handlers()
        try:
            scene.frame_set(frames[0] - 1)
            alone.append(play(scene, frames))
        finally:
            handlers.register_handlers()

    for number, first in enumerate(range(2, args.frames + 1, chunk)):
        frames = range(first, min(first + chunk, args.frames + 1))
        for run in ((play_ours, play_alone) if number % 2 == 0 else (play_alone, play_ours)):
            run(frames)
    play_ours(range(2, 3))
    ours_fps, alone_fps = (statistics.median(fps for fps, _ in runs) for runs in (ours, alone))
    ours_cpu, alone_cpu = (statistics.median(cpu for _, cpu in runs) for runs in (ours, alone))
    rows.append((f"playback, {args.frames} frames, 100 expression + 18 pose channels", f"{ours_fps:.1f} frames/s", ">= 30 frames/s"))
    rows.append(("Blender alone: the same head's shape-key animation", f"{alone_fps:.1f} frames/s", "reference"))
    rows.append(("  ratio (ours / Blender alone)", f"{ours_fps / alone_fps:.2f} x", ">= 0.8 x"))
    rows.append(("  CPU per frame, ours / Blender alone (ratio)",
                 f"{ours_cpu:.1f} / {alone_cpu:.1f} ms ({alone_cpu / ours_cpu:.2f} x)", ""))
    rows.append((f"playback max error, {len(checked)} frames checked", f"{worst:.1e} m", "<= 1e-5 m"))

    phases = {
        "ours": phase_times(scene, lambda: play_ours(range(1, 2)), args.frames),
        "alone": phase_times(scene, lambda: None, args.frames, alone=(head, modifier)),
    }

    print(f"\nFLAME sequences in Blender {bpy.app.version_string}, backend {blender_runtime.backend_in_use_label()}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    header = ("measure", "result", "target")
    widths = [max(len(row[i]) for row in [*rows, header]) for i in range(3)]
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print("| " + " | ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) + " |")
    print("\nWhere a frame's time goes (median ms per frame over the same frames):\n")
    print("| per frame | extension, before Blender evaluates | Blender's evaluation | extension, after | whole frame |")
    print("|---|---|---|---|---|")
    for name, label in (("ours", "ours"), ("alone", "Blender alone")):
        print(f"| {label} | " + " | ".join(f"{value:.2f}" for value in phases[name]) + " |")


def phase_times(scene, prepare, frames: int, alone=None) -> list[float]:
    """Median milliseconds per frame: the extension's ``frame_change_pre`` handlers, Blender's
    evaluation between them and the ``frame_change_post`` ones, those, and the whole
    ``frame_set`` (stamps from handlers put first and last in each list)."""
    pre, post = bpy.app.handlers.frame_change_pre, bpy.app.handlers.frame_change_post
    stamps: dict[str, float] = {}

    def stamp(name):
        def handler(*args) -> None:
            stamps[name] = time.perf_counter()
        return handler

    first_pre, last_pre, first_post, last_post = (stamp(n) for n in ("pre0", "pre1", "post0", "post1"))
    prepare()
    if alone is not None:
        head, modifier = alone
        head.animation_data.action = None
        if modifier is not None:
            modifier.show_viewport = False
        handlers.unregister_handlers()
    pre.insert(0, first_pre)
    pre.append(last_pre)
    post.insert(0, first_post)
    post.append(last_post)
    rows = []
    try:
        for frame in range(2, min(frames, 300) + 1):
            start = time.perf_counter()
            scene.frame_set(frame)
            end = time.perf_counter()
            rows.append((stamps["pre1"] - stamps["pre0"], stamps["post0"] - stamps["pre1"],
                         stamps["post1"] - stamps["post0"], end - start))
    finally:
        for handlers_list, handler in ((pre, first_pre), (pre, last_pre), (post, first_post), (post, last_post)):
            handlers_list.remove(handler)
        if alone is not None:
            handlers.register_handlers()
    return [1000.0 * statistics.median(column) for column in zip(*rows, strict=True)]


if __name__ == "__main__":
    main()
