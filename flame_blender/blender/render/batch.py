"""Headless batch rendering with ground truth, in one Blender process.

:class:`BatchRenderer` renders the samples of one shard of a dataset into an output folder::

    OUT/
      run.json                  settings that define the samples (a rerun must match them)
      labels.json               the segmentation label table
      index.jsonl               one record per sample: {"index", "id", "status", "files"|"error"}
                                (shard K of N: index.shard-K-of-N.jsonl; merge_manifests joins them)
      samples/000000.rgb.png    picture, 8-bit RGBA (opaque unless transparent)
      samples/000000.depth.exr  camera z in metres (float32, channel Y), 0 on background
      samples/000000.normal.exr unit normals in camera axes (float32, channels R, G, B = x, y, z)
      samples/000000.labels.png segmentation label values (8-bit grey, see labels.json)
      samples/000000.json       parameters, camera, light, landmarks (written last)

The batch works in a fresh empty file (``read_homefile(use_empty=True)``): run it headless.
Per image, the main thread only drives Blender: it writes core's forward pass into the head's
mesh, places the studio, and renders the picture in one persistent Cycles session (saved by
Blender as an uncompressed scratch TGA). A writer thread (:mod:`.batch_outputs`) turns it into
the PNG picture and computes the ground truth exactly from the rendered mesh and camera
(:mod:`flame_blender.core.render.rasterize`: at each pixel centre, what a one-sample Cycles
render with a vanishing pixel filter sees), then writes the depth, normal and label files and
the JSON (:mod:`flame_blender.core.render.sample_record`) while Cycles renders the next image. Every file
is written atomically (temporary file, then rename) and a sample's JSON is written last, so a
sample is finished exactly when its JSON exists: a rerun skips finished samples, and a run
killed midway loses only the samples in flight. A sample that raises is recorded as "failed"
with its error and the run goes on.

Its settings and their checks are :mod:`.batch_settings`; the Blender scene it drives is
:mod:`.batch_scene`; contact sheets are :mod:`.batch_sheet`.
"""

from __future__ import annotations

import json
import math
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bpy
import numpy as np

from ...core.io.atomic import (
    atomic_write_text,
    remove_stale_temporaries,
)
from ...core.model.parameters import FlameParameters
from ...core.render import sample_record
from ...core.render.dataset import SampleSpec, sample_id, sample_spec, shard_indices
from ...core.render.manifest import manifest_path, write_manifest
from ...core.render.segmentation import label_table
from ..blas_threads import single_threaded_blas
from . import batch_sheet, material, passes, studio
from . import device as cycles_device
from .batch_outputs import BatchOutputs, SampleJob, scratch_path
from .batch_scene import BatchScene
from .batch_settings import (
    LANDMARK_SETS as LANDMARK_SETS,  # (public names, kept where they were)
)
from .batch_settings import (
    SAMPLES_FOLDER,
    BatchSettings,
    BatchValidation,
)
from .batch_settings import (
    BatchInputError as BatchInputError,
)
from .batch_sheet import sample_tiles as sample_tiles  # (public name, kept where it was)

FILE_KINDS = {
    "rgb": "rgb.png",
    "depth": "depth.exr",
    "normal": "normal.exr",
    "labels": "labels.png",
    "json": "json",
}
#: Images rendered ahead of the writer thread at most: bounds memory, and a kill loses at most
#: these (their JSON is not written yet, so a rerun renders them again).
WRITE_AHEAD = 2
#: Seconds between rewrites of the shard's manifest while rendering (it is always rewritten at
#: the end). Finished samples are known from their JSON files, so a kill loses nothing by it.
MANIFEST_INTERVAL = 1.0
#: ... and at least this many times the last rewrite's duration apart: a shard of 100,000 samples
#: has a manifest of 100,000 lines, rewritten whole, which must not slow the renders by more
#: than a couple of per cent.
MANIFEST_COST_RATIO = 50.0
CONVENTIONS = sample_record.CONVENTIONS  # (public name, kept where it always was)


@dataclass
class BatchSummary:
    rendered: int = 0
    skipped: int = 0
    failed: int = 0
    device: str = ""
    render_seconds: float = 0.0  # inside Cycles (render_pre .. render_post)
    total_seconds: float = 0.0  # everything per sample, renders included
    failures: list[tuple[str, str]] = field(default_factory=list)

    @property
    def exit_status(self) -> int:
        return 1 if self.failed else 0


@dataclass
class SampleInputs:
    """One sample's content, computed without Blender (on the inputs thread)."""

    spec: SampleSpec
    vertices: np.ndarray  # (5023, 3) core's forward pass, FLAME space
    landmark_points: dict[str, np.ndarray]  # --landmarks name -> (L, 3) FLAME space
    albedo: np.ndarray | None  # (H, W, 4) Blender image pixels; None without a texture model


class BatchRenderer(BatchValidation, BatchScene, BatchOutputs):
    """Validate and build the scene with :meth:`prepare`, then :meth:`run`.

    Before ``run`` nothing is written (the output folder may be created).
    """

    def __init__(self, settings: BatchSettings, log: Callable[[str], None] | None = None) -> None:
        self.settings = settings
        self.log = log or (lambda text: print(text, flush=True))
        self.parameters: list[FlameParameters] | None = None
        self.head: bpy.types.Object | None = None
        self.scene: bpy.types.Scene | None = None
        self.device_choice: cycles_device.DeviceChoice | None = None
        self.timer = passes.RenderTimer()
        #: wall seconds per phase of render_sample and write_sample, summed over samples (for
        #: the benchmark); the writer thread's phase overlaps the next sample's renders
        self.phase_seconds: dict[str, float] = {}
        #: the same phases' CPU seconds on their own thread (a helper thread's wall time also
        #: counts the time Cycles' threads hold the cores)
        self.phase_cpu_seconds: dict[str, float] = {}
        self._phase_lock = threading.Lock()

    # -- rendering --------------------------------------------------------------------------

    def run(self) -> BatchSummary:
        s = self.settings
        out = Path(s.out)
        samples_dir = out / SAMPLES_FOLDER
        indices = list(shard_indices(s.count, s.shard, s.shards))
        ids = {index: sample_id(index, s.count) for index in indices}
        mine = set(ids.values())
        manifest = manifest_path(out, s.shard, s.shards)
        # only our own leftovers: other shards may be writing into the same folders right now
        remove_stale_temporaries(samples_dir, lambda name: name.split(".")[0] in mine)
        remove_stale_temporaries(out, lambda name: name == manifest.name)
        if not (out / "run.json").exists():
            atomic_write_text(out / "run.json", json.dumps(self.run_settings(), indent=1) + "\n")
        atomic_write_text(out / "labels.json", json.dumps(label_table(), indent=1) + "\n")

        records: dict[int, dict[str, Any]] = {}
        todo = []
        for index in indices:
            if (samples_dir / f"{ids[index]}.json").is_file():
                records[index] = self._ok_record(index, ids[index])
            else:
                records[index] = {"index": index, "id": ids[index], "status": "pending"}
                todo.append(index)
        write_manifest(manifest, records.values())
        summary = BatchSummary(skipped=len(indices) - len(todo))
        shard_text = f" (shard {s.shard}/{s.shards})" if s.shards > 1 else ""
        self.log(
            f"{len(indices)} samples{shard_text}: {summary.skipped} already done, "
            f"{len(todo)} to render into {out}"
        )
        if not todo:
            return summary

        summary.device = self.device_choice.label
        self.log(self.device_choice.message)
        started = time.perf_counter()
        done = 0
        manifest_written, manifest_seconds = started, 0.0

        def finish(index: int, sample_started: float, error: BaseException | None) -> None:
            """Record one sample's outcome (main thread), in the manifest and the log."""
            nonlocal done, manifest_written, manifest_seconds
            if error is None:
                records[index] = self._ok_record(index, ids[index])
                summary.rendered += 1
                status = "ok"
            else:
                message = f"{type(error).__name__}: {error}"
                records[index] = {
                    "index": index, "id": ids[index], "status": "failed", "error": message,
                }
                summary.failed += 1
                summary.failures.append((ids[index], message))
                status = f"FAILED: {message}"
                traceback.print_exception(type(error), error, error.__traceback__, file=sys.stderr)
            done += 1
            now = time.perf_counter()
            interval = max(MANIFEST_INTERVAL, MANIFEST_COST_RATIO * manifest_seconds)
            if error is not None or done == len(todo) or now - manifest_written >= interval:
                write_manifest(manifest, records.values())
                manifest_written = time.perf_counter()
                manifest_seconds = manifest_written - now
            rate = done / (now - started)
            eta = (len(todo) - done) / rate
            self.log(
                f"[{done}/{len(todo)}] {ids[index]} {status} "
                f"{now - sample_started:.2f} s | {rate:.2f} samples/s | ETA {_clock(eta)}"
            )

        def collect(entry: tuple[int, float, Future]) -> None:
            index, sample_started, future = entry
            error = future.exception()  # waits for the writer to finish this sample
            finish(index, sample_started, error)

        # Three stages, one thread each: the inputs thread computes the next sample's content
        # (forward pass, albedo) and the writer thread the previous samples' files, while the
        # main thread drives Blender. Cycles releases Python's lock while it renders, so both
        # work during the renders. One writer: a sample's JSON is written after its other
        # files, and samples finish in order.
        pending: deque[tuple[int, float, Future]] = deque()
        with (
            # numpy's OpenBLAS threads busy-wait after each product, on the cores Cycles renders
            # with: the inputs and writer threads' few small products run on one thread instead
            single_threaded_blas(),
            self.timer,
            ThreadPoolExecutor(1, thread_name_prefix="flame-batch-inputs") as reader,
            ThreadPoolExecutor(1, thread_name_prefix="flame-batch-writer") as writer,
        ):
            upcoming = reader.submit(self.sample_inputs, todo[0])
            for position, index in enumerate(todo):
                inputs = upcoming
                if position + 1 < len(todo):
                    upcoming = reader.submit(self.sample_inputs, todo[position + 1])
                while pending and (len(pending) >= WRITE_AHEAD or pending[0][2].done()):
                    collect(pending.popleft())
                sample_started = time.perf_counter()
                try:
                    job = self.render_sample(index, ids[index], samples_dir, inputs.result())
                except Exception as error:  # one bad sample must not stop the batch
                    finish(index, sample_started, error)
                    continue
                pending.append((index, sample_started, writer.submit(self.write_sample, job)))
            while pending:
                collect(pending.popleft())
        summary.total_seconds = time.perf_counter() - started
        summary.render_seconds = self.timer.seconds
        return summary

    def _ok_record(self, index: int, name: str) -> dict[str, Any]:
        files = {kind: f"{SAMPLES_FOLDER}/{name}.{suffix}" for kind, suffix in FILE_KINDS.items()}
        return {"index": index, "id": name, "status": "ok", "files": files}

    def spec(self, index: int) -> SampleSpec:
        s = self.settings
        return sample_spec(
            s.seed,
            index,
            self.n_shape,
            self.n_expression,
            self.n_albedo,
            s.ranges,
            parameters=self.parameters[index] if self.parameters is not None else None,
        )

    def forward_landmarks(self, params: FlameParameters) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Core's FLAME forward pass (numpy, float64): vertices ``(5023, 3)`` in FLAME space and
        the chosen landmark sets (``--landmarks`` name -> ``(L, 3)``)."""
        output = self.forward.run(**params.forward_kwargs())
        vertices = np.asarray(output.vertices, np.float64).reshape(-1, 3)
        points = {
            name: np.asarray(output.landmarks[key], np.float64).reshape(-1, 3)
            for name, key in self.landmark_names.items()
        }
        return vertices, points

    @contextmanager
    def _phase(self, name: str):
        started, cpu_started = time.perf_counter(), time.thread_time()
        try:
            yield
        finally:
            seconds, cpu = time.perf_counter() - started, time.thread_time() - cpu_started
            with self._phase_lock:
                self.phase_seconds[name] = self.phase_seconds.get(name, 0.0) + seconds
                self.phase_cpu_seconds[name] = self.phase_cpu_seconds.get(name, 0.0) + cpu

    def sample_inputs(self, index: int) -> SampleInputs:
        """Sample ``index``'s content without Blender (inputs thread): parameters, core's forward
        pass with the landmarks, and the albedo image's pixels."""
        with self._phase("inputs: forward pass and albedo (inputs thread)"):
            spec = self.spec(index)
            vertices, landmark_points = self.forward_landmarks(spec.parameters)
            albedo = None
            if self.texture_model is not None:
                albedo = material.albedo_pixels(self.texture_model, spec.albedo)
            return SampleInputs(spec, vertices, landmark_points, albedo)

    def render_sample(
        self, index: int, name: str, samples_dir: Path, inputs: SampleInputs | None = None
    ) -> SampleJob:
        """Blender's part of one sample (main thread): the head, the studio and the picture
        (saved). ``inputs``: :meth:`sample_inputs` of ``index``, computed here when not given.
        Returns what :meth:`write_sample` needs, the ground truth included."""
        s = self.settings
        scene = self.scene
        if inputs is None:
            inputs = self.sample_inputs(index)
        spec, vertices, landmark_points = inputs.spec, inputs.vertices, inputs.landmark_points
        with self._phase("head, albedo and studio"):
            self._set_head_vertices(vertices)
            self._set_scene(spec, vertices, inputs.albedo)
            camera = self.sample_camera()
        if not self._mesh_checked:  # once: nothing (modifier, shape key) changes what we wrote
            mesh_error = np.abs(studio.evaluated_vertices(self.head) - vertices).max()
            if mesh_error > 1e-4:
                raise RuntimeError(
                    f"the Blender mesh differs from FLAME.forward by {mesh_error * 1000:.3f} mm"
                )
            self._mesh_checked = True
        paths = {kind: samples_dir / f"{name}.{suffix}" for kind, suffix in FILE_KINDS.items()}
        # Blender writes the picture as an uncompressed scratch file (hidden, so a resumed run
        # removes a killed run's); the writer thread makes the sample's files from it, and the
        # ground truth from the mesh: what Cycles renders, read here while it is current
        picture = scratch_path(samples_dir, name, "picture.tga")
        with self._phase("head, albedo and studio"):
            vertex_normals = self._head_vertex_normals()
            clip = (scene.camera.data.clip_start, scene.camera.data.clip_end)
        try:
            with self._phase("picture (render + save)"):
                passes.render_picture_scratch(scene, picture, s.samples, s.transparent, s.denoise)
        except BaseException:
            picture.unlink(missing_ok=True)
            raise
        return SampleJob(
            spec, name, camera, landmark_points, vertices, vertex_normals, clip, paths, picture,
            studio.head_centre(vertices),
        )

    # -- after the run ----------------------------------------------------------------------

    def write_contact_sheet(self, path: str | Path, max_samples: int = 16) -> Path | None:
        """A sheet of the finished samples (picture with landmarks, labels, normals), or None."""
        s = self.settings
        folder = Path(s.out) / SAMPLES_FOLDER
        records = (
            folder / f"{sample_id(index, s.count)}.json" for index in shard_indices(s.count, s.shard, s.shards)
        )
        return batch_sheet.write_contact_sheet(records, path, max_samples)


def _clock(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    return f"{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
