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

The Blender scene it drives is :mod:`.batch_scene`; contact sheets are :mod:`.batch_sheet`.
"""

from __future__ import annotations

import hashlib
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

from ... import core
from ...core.errors import FlameFileError, FlameParameterError
from ...core.io.atomic import (
    atomic_write_text,
    remove_stale_temporaries,
)
from ...core.model import landmarks as core_landmarks
from ...core.model.parameters import FlameParameters, load_parameter_sequence
from ...core.render import sample_record
from ...core.render.dataset import SampleSpec, SamplingRanges, sample_id, sample_spec, shard_indices
from ...core.render.manifest import manifest_path, write_manifest
from ...core.render.segmentation import label_table
from ..blas_threads import single_threaded_blas
from . import batch_sheet, material, passes, studio
from . import device as cycles_device
from .batch_outputs import BatchOutputs, SampleJob, scratch_path
from .batch_scene import BatchScene
from .batch_sheet import sample_tiles as sample_tiles  # (public name, kept where it was)

FORMAT_VERSION = 1
SAMPLES_FOLDER = "samples"
#: ``--landmarks`` names -> landmark sets of core's forward pass (``FlameNumpy.run``), first
#: found wins: core's one definition (``core.landmarks.LANDMARK_SET_SOURCES``). ``ibug68`` is the
#: fixed 68-point embedding; ``ibug68_dynamic`` has the jaw contour that slides with the head's
#: yaw relative to the camera (DECA / RingNet style), static 51 for the rest.
LANDMARK_SETS: dict[str, tuple[str, ...]] = core_landmarks.LANDMARK_SET_SOURCES
DEFAULT_LANDMARK_SETS = ("mediapipe", "ibug68")
FILE_KINDS = {
    "rgb": "rgb.png",
    "depth": "depth.exr",
    "normal": "normal.exr",
    "labels": "labels.png",
    "json": "json",
}
#: Denoiser prefilter of the pictures. "FAST" treats the albedo and normal guide passes as
#: clean, which they are for a head without hair, depth of field or motion blur; it skips two
#: of the denoiser's three network runs per image (Blender's default, "ACCURATE", denoises the
#: guides first).
DENOISE_PREFILTERS = ("FAST", "ACCURATE", "NONE")
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


class BatchInputError(Exception):
    """Bad input found before anything was written (exit status 2)."""


@dataclass
class BatchSettings:
    out: Path
    flame_dir: Path | None = None  # None: core.builtin_flame_dir()
    count: int = 8
    seed: int = 0
    params_file: Path | None = None
    resolution: tuple[int, int] = (256, 256)
    samples: int = 16
    device: str = "AUTO"
    shard: int = 0
    shards: int = 1
    landmark_sets: tuple[str, ...] = DEFAULT_LANDMARK_SETS
    ranges: SamplingRanges = field(default_factory=SamplingRanges)
    transparent: bool = False
    denoise: bool = True
    denoise_prefilter: str = "FAST"  # one of DENOISE_PREFILTERS


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


class BatchRenderer(BatchScene, BatchOutputs):
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

    # -- validation (no writes) -------------------------------------------------------------

    def prepare(self) -> None:
        """Check every input and load the model; raise :class:`BatchInputError` on bad input."""
        s = self.settings
        if s.device.upper() not in cycles_device.DEVICE_NAMES:
            raise BatchInputError(
                f"unknown device {s.device!r}; expected one of {', '.join(cycles_device.DEVICE_NAMES)}"
            )
        width, height = s.resolution
        if width < 1 or height < 1 or s.samples < 1:
            raise BatchInputError("--resolution and --samples must be positive")
        if s.denoise_prefilter.upper() not in DENOISE_PREFILTERS:
            raise BatchInputError(
                f"unknown denoise prefilter {s.denoise_prefilter!r}; expected one of "
                f"{', '.join(DENOISE_PREFILTERS)}"
            )
        s.denoise_prefilter = s.denoise_prefilter.upper()
        unknown = [name for name in s.landmark_sets if name not in LANDMARK_SETS]
        if unknown:
            raise BatchInputError(
                f"unknown landmark sets {unknown}; expected some of {sorted(LANDMARK_SETS)}"
            )
        if s.flame_dir is None:
            s.flame_dir = Path(core.builtin_flame_dir())
        try:
            # absolute, links kept: extras are read beside the path named (core.extras_folder)
            self.model_file = core.absolute_path(core.find_flame_model_file(s.flame_dir))
            self.model = core.load_flame(self.model_file)
            self.flame_folder = self.model_file.parent
            total = int(self.model["shapedirs"].shape[2])
            self.n_shape, self.n_expression = min(total, 300), max(total - 300, 0)
            # core's forward pass, independent of Blender's: the 3D landmarks come from it, and
            # each sample checks that the Blender mesh agrees with it
            self.forward = core.FlameNumpy(
                self.model_file, n_shape=self.n_shape, n_expression=self.n_expression
            )
        except (FlameFileError, FlameParameterError) as error:
            raise BatchInputError(f"--flame-dir: {error}") from None
        available = self.forward.landmarks.names
        self.landmark_names = {}
        for name in s.landmark_sets:
            found = next((key for key in LANDMARK_SETS[name] if key in available), None)
            if found is None:
                raise BatchInputError(
                    f"--landmarks {name}: no {' or '.join(LANDMARK_SETS[name])} landmark "
                    f"embedding in {self.flame_folder}"
                )
            self.landmark_names[name] = found
        texture_file = material.find_texture_model_file(self.flame_folder)
        self.texture_model = core.load_texture_model(texture_file) if texture_file else None
        # a head without UVs, or a texture drawn for other UVs, gets no albedo, said and recorded
        self.albedo_note = None
        if self.texture_model is not None:
            faces = np.asarray(self.model["f"], np.int64)
            uvs = core.find_head_uvs(self.flame_folder, faces)
            self.albedo_note = core.albedo_problem(self.texture_model, uvs.corner_uvs, len(faces))
            if self.albedo_note is not None:
                self.log(f"WARNING: {self.albedo_note}; the head gets a plain skin colour")
                self.texture_model = None
        self.n_albedo = int(self.texture_model.n_components) if self.texture_model else 0
        if s.params_file is not None:
            self.parameters = self._load_parameters(s.params_file)
            s.count = len(self.parameters)
        if s.count < 0:
            raise BatchInputError("--num must be >= 0")
        if not (0 <= s.shard < s.shards):
            raise BatchInputError(f"--shard {s.shard}/{s.shards}: expected 0 <= K < N")
        self._check_output_folder()
        try:
            self._build_scene()
        except (FlameFileError, FlameParameterError, OSError) as error:
            raise BatchInputError(f"cannot set up the scene: {error}") from None

    def _load_parameters(self, path: Path) -> list[FlameParameters]:
        try:
            sequence = load_parameter_sequence(path)
        except (FlameFileError, FlameParameterError) as error:
            raise BatchInputError(f"--params: {error}") from None
        if not sequence:
            raise BatchInputError(f"--params: {path}: holds no parameter sets")
        for number, params in enumerate(sequence):
            for group, values, count in (
                ("shape", params.shape, self.n_shape),
                ("expression", params.expression, self.n_expression),
            ):
                if np.any(values[count:] != 0.0):
                    raise BatchInputError(
                        f"--params: {path}: sample {number}: {values.shape[0]} {group} "
                        f"coefficients, the model has {count}"
                    )
                if np.any(np.abs(values) > 10.0):
                    raise BatchInputError(
                        f"--params: {path}: sample {number}: {group} coefficients beyond ±10"
                    )
        return sequence

    def run_settings(self) -> dict[str, Any]:
        """What defines the samples' content; a rerun into the same folder must match it."""
        s = self.settings
        source: dict[str, Any] = {"seed": s.seed}
        if s.params_file is not None:
            source["params_sha256"] = hashlib.sha256(Path(s.params_file).read_bytes()).hexdigest()
        return {
            "format": FORMAT_VERSION,
            "model": str(self.model_file),
            "n_shape": self.n_shape,
            "n_expression": self.n_expression,
            "texture_model": self.texture_model.kind if self.texture_model else None,
            "source": source,
            "resolution": list(s.resolution),
            "samples": s.samples,
            "denoise": s.denoise,
            "denoise_prefilter": s.denoise_prefilter if s.denoise else None,
            "transparent": s.transparent,
            "landmarks": list(s.landmark_sets),
            "ranges": s.ranges.to_dict(),
        }

    def _check_output_folder(self) -> None:
        out = Path(self.settings.out)
        if out.exists() and not out.is_dir():
            raise BatchInputError(f"--out {out}: exists and is not a folder")
        existing = out / "run.json"
        if existing.is_file():
            try:
                previous = json.loads(existing.read_text(encoding="utf-8"))
            except (OSError, ValueError) as error:
                raise BatchInputError(f"--out {out}: unreadable run.json ({error})") from None
            current = self.run_settings()
            if previous != current:
                changed = sorted(key for key in set(previous) | set(current) if previous.get(key) != current.get(key))
                raise BatchInputError(
                    f"--out {out}: holds a run with different settings ({', '.join(changed)}); "
                    "use another folder, or the same settings to resume"
                )
        # Probe: can we create the folders and a file in them? (removed at once)
        try:
            (out / SAMPLES_FOLDER).mkdir(parents=True, exist_ok=True)
            atomic_write_text(out / SAMPLES_FOLDER / ".write-probe", "")
            (out / SAMPLES_FOLDER / ".write-probe").unlink()
        except OSError as error:
            raise BatchInputError(
                f"--out {out}: cannot write there ({error.strerror or error})"
            ) from None

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
