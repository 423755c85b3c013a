"""How fast FLAME heads update in Blender (bpy), on the built-in synthetic 300+100 model.

    python benchmarks/blender_update.py [--repeats 50] [--frames 1000]

Prints one table: import with all 400 shape keys; a pose slider change until the evaluated mesh
is read back (all coefficients zero, then all 400 non-zero) against Blender's own re-evaluation
after one shape-key value change, measured in the same run; and playback of a keyframed
sequence through ``scene.frame_set``. Every timed state is also checked against the NumPy
forward pass, so a fast but wrong update cannot pass.
"""

from __future__ import annotations

import argparse
import contextlib
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

from flame_blender.blender import get_parameters, handlers, import_head, set_parameters  # noqa: E402
from flame_blender.blender import runtime as blender_runtime  # noqa: E402
from flame_blender.core import FlameNumpy, FlameParameters, builtin_flame_dir  # noqa: E402

_buffer = np.empty(5023 * 3, dtype=np.float32)


def read_back(obj) -> np.ndarray:
    """Evaluate the depsgraph and read the evaluated vertex positions (object space)."""
    depsgraph = bpy.context.evaluated_depsgraph_get()
    depsgraph.update()
    mesh = obj.evaluated_get(depsgraph).data
    mesh.attributes["position"].data.foreach_get("vector", _buffer)
    return _buffer


_cpu_times: list[float] = []


def median_ms(action, repeats: int) -> float:
    """Median wall time in ms; the CPU time of the process for each call goes to _cpu_times."""
    times = []
    for i in range(repeats):
        start, cpu = time.perf_counter(), time.process_time()
        action(i)
        times.append(time.perf_counter() - start)
        _cpu_times.append(time.process_time() - cpu)
    return 1e3 * statistics.median(times)


def cpu_ms() -> str:
    """Median process CPU time of the calls since the last call (stabler on a loaded machine)."""
    value = 1e3 * statistics.median(_cpu_times)
    _cpu_times.clear()
    return f"{value:.2f} ms"


def check(obj, reference: FlameNumpy) -> float:
    error = float(np.abs(read_back(obj).reshape(-1, 3) - reference.forward(**get_parameters(obj).forward_kwargs())).max())
    if error > 1e-5:
        raise SystemExit(f"benchmark state is not exact: max error {error:.2e} m")
    return error


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--frames", type=int, default=1000)
    args = parser.parse_args(argv)

    addon_utils.enable("flame_blender", default_set=True)
    flame_dir = builtin_flame_dir()
    bpy.ops.wm.read_homefile(use_empty=True)
    scene = bpy.context.scene
    reference = FlameNumpy(flame_dir, n_shape=300, n_expression=100)
    rows: list[tuple[str, ...]] = []

    start = time.perf_counter()
    with contextlib.suppress(ImportError):
        import torch  # noqa: F401  (a one-time cost of the first import in a Blender session)
    torch_s = time.perf_counter() - start
    start = time.perf_counter()
    cold = import_head(scene, flame_dir, name="cold")
    cold_s = time.perf_counter() - start
    warm_times = []
    for i in range(3):
        start = time.perf_counter()
        import_head(scene, flame_dir, name=f"warm{i}")
        warm_times.append(time.perf_counter() - start)
    rows.append(("once per session: import torch", f"{torch_s:.3f} s", "(for information)"))
    rows.append(("import, 400 shape keys, reading the model file", f"{cold_s:.3f} s", "<= 1.0 s"))
    rows.append(("import, 400 shape keys, model cached (median of 3)", f"{statistics.median(warm_times):.3f} s", "<= 1.0 s"))
    for obj in list(scene.objects):
        bpy.data.objects.remove(obj)
    del cold

    head = import_head(scene, flame_dir, name="bench")
    read_back(head)

    def pose_change(i: int) -> None:
        head.flame.jaw_pose = (0.05 + 0.01 * (i % 10), 0.0, 0.0)
        read_back(head)

    _cpu_times.clear()
    zero_ms = median_ms(pose_change, args.repeats)
    zero_cpu = cpu_ms()
    check(head, reference)
    rows.append(("pose slider -> evaluated mesh, coefficients all zero", f"{zero_ms:.2f} ms", "<= 5 ms", zero_cpu))

    set_parameters(head, FlameParameters.random(np.random.default_rng(0), 300, 100))
    read_back(head)
    blocks = head.data.shape_keys.key_blocks

    def key_change(i: int) -> None:
        blocks["expr_010"].value = 0.5 + 0.01 * (i % 10)
        read_back(head)

    # Interleaved, so that load from other processes hits both measurements alike. "Blender
    # alone" is the same shape-key edit with the extension's handlers out of the way.
    posed_times, blender_times, posed_cpu, blender_cpu = [], [], [], []
    for i in range(args.repeats):
        posed_times.append(median_ms(lambda j, i=i: pose_change(i + j), 1))
        posed_cpu.append(_cpu_times.pop())
        handlers.unregister_handlers()
        try:
            blender_times.append(median_ms(lambda j, i=i: key_change(i + j), 1))
            blender_cpu.append(_cpu_times.pop())
        finally:
            handlers.register_handlers()
    posed_ms, blender_ms = statistics.median(posed_times), statistics.median(blender_times)
    posed_cpu_ms, blender_cpu_ms = 1e3 * statistics.median(posed_cpu), 1e3 * statistics.median(blender_cpu)
    check(head, reference)
    with_handler_ms = median_ms(key_change, args.repeats)
    with_handler_cpu = cpu_ms()
    check(head, reference)
    rows.append(("pose slider -> evaluated mesh, 400 coefficients non-zero", f"{posed_ms:.2f} ms", f"<= 1.5 x {blender_ms:.2f} ms", f"{posed_cpu_ms:.2f} ms"))
    rows.append(("Blender alone: one shape-key value -> evaluated mesh", f"{blender_ms:.2f} ms", "reference", f"{blender_cpu_ms:.2f} ms"))
    rows.append(("  ratio (pose change / Blender alone)", f"{posed_ms / blender_ms:.2f} x", "<= 1.5 x", f"{posed_cpu_ms / blender_cpu_ms:.2f} x"))
    rows.append(("shape-key value edit -> exact evaluated mesh (with pose key)", f"{with_handler_ms:.2f} ms", "(for information)", with_handler_cpu))

    # Playback: pose keyframed every 10 frames, 100 expression values keyframed every 25 frames.
    set_parameters(head, FlameParameters.random(np.random.default_rng(1), 300, 100, groups=("shape",)))
    rng = np.random.default_rng(2)
    for frame in range(1, args.frames + 1, 10):
        params = FlameParameters.random(rng, 0, 0, groups=("pose",))
        for name in ("global_pose", "neck_pose", "jaw_pose", "eye_pose"):
            setattr(head.flame, name, getattr(params, name).tolist())
            head.keyframe_insert(f"flame.{name}", frame=frame)
    for frame in range(1, args.frames + 1, 25):
        values = rng.normal(size=100)
        for i in range(100):
            blocks[f"expr_{i:03d}"].value = values[i]
            blocks[f"expr_{i:03d}"].keyframe_insert("value", frame=frame)
    scene.frame_start, scene.frame_end = 1, args.frames
    scene.frame_set(1)
    start = time.perf_counter()
    for frame in range(1, args.frames + 1):
        scene.frame_set(frame)
    fps = args.frames / (time.perf_counter() - start)
    read_back(head)
    check(head, reference)
    rows.append((f"playback, {args.frames} keyframed frames (frame_set loop)", f"{fps:.1f} frames/s", ">= 30 frames/s"))

    print(f"\nFLAME in Blender {bpy.app.version_string}, backend {blender_runtime.backend_in_use_label()}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} (CPU column: process CPU time, "
          "all threads; steadier than wall time when other processes compete)")
    header = ("measure", "result (wall)", "target", "CPU")
    rows = [row + ("",) * (4 - len(row)) for row in rows]
    widths = [max(len(row[i]) for row in [*rows, header]) for i in range(4)]
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print(" | ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))


if __name__ == "__main__":
    main()
