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
Every file is written atomically (temporary file, then rename) and a sample's JSON is written
last, so a sample is finished exactly when its JSON exists: a rerun skips finished samples, and a
run killed midway loses only the sample in flight. A sample that raises is recorded as "failed"
with its error and the run goes on.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
import time
import traceback
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bpy
import numpy as np

from ... import core
from ...core import camera as core_camera
from ...core import landmarks as core_landmarks
from ...core.atomic import atomic_write_text, atomic_write_with, remove_stale_temporaries
from ...core.contact_sheet import colourize_labels, colourize_normals, contact_sheet, draw_landmarks
from ...core.dataset import SampleSpec, SamplingRanges, sample_id, sample_spec, shard_indices
from ...core.errors import FlameFileError, FlameParameterError
from ...core.exr import read_exr, write_exr
from ...core.ground_truth import intrinsic_matrix, project_landmarks
from ...core.manifest import manifest_path, write_manifest
from ...core.parameters import FlameParameters, load_parameter_sequence
from ...core.png import read_png, write_png
from ...core.segmentation import LABELS, label_table
from . import device as cycles_device
from . import material, passes, studio, visibility

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
CONVENTIONS = {
    "world": "FLAME model space: what FLAME.forward returns; metres, y up, face towards +z, "
    "the head's left eye at +x",
    "camera": "OpenCV axes: x right, y down, z forward (visible points have z > 0); "
    "world_to_camera maps world points to camera points, p_cam = R @ p_world + t",
    "pixels": "(0, 0) is the top-left corner of the image, the first pixel's centre is (0.5, 0.5); "
    "u = fx * x / z + cx, v = fy * y / z + cy",
    "depth": "camera z in metres at each pixel centre (not the distance to the camera centre); "
    "0 on background",
    "normals": "unit surface normals in camera axes (OpenCV), 0 on background",
    "visible": "in front of the camera, inside the image, and the rendered surface at the "
    "landmark (the tangent plane of one of the four pixel centres around it, met by the "
    "landmark's ray) is within 2 mm of its camera z: nothing in front of it. A landmark right "
    "on a silhouette, where no pixel around it sees its own surface, counts as not visible",
    "visible_ray": "in front of the camera, inside the image, and the straight segment from "
    "the camera centre to the landmark meets the rendered head mesh nowhere more than 0.1 mm "
    "before the landmark (Blender BVH ray cast, exact); occluded_by_m says how far before it "
    "the first surface met is",
    "contour": "ibug68_dynamic: the jaw-contour row is chosen from the head's yaw relative to "
    "the camera (the line of sight to the head's centre), not from the head pose alone; "
    "yaw_deg > 0 = the face turned toward its left (+x) as the camera sees it",
}


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


class BatchRenderer:
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
        #: wall seconds per phase of render_sample, summed over samples (for the benchmark)
        self.phase_seconds: dict[str, float] = {}
        #: the jaw-contour row of the sample being rendered (camera-relative), or None
        self.contour_choice: core_landmarks.ContourChoice | None = None

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
        with self.timer:
            for number, index in enumerate(todo, start=1):
                sample_started = time.perf_counter()
                try:
                    self.render_sample(index, ids[index], samples_dir)
                    records[index] = self._ok_record(index, ids[index])
                    summary.rendered += 1
                    status = "ok"
                except Exception as error:  # one bad sample must not stop the batch
                    message = f"{type(error).__name__}: {error}"
                    records[index] = {
                        "index": index, "id": ids[index], "status": "failed", "error": message,
                    }
                    summary.failed += 1
                    summary.failures.append((ids[index], message))
                    status = f"FAILED: {message}"
                    traceback.print_exc(file=sys.stderr)
                write_manifest(manifest, records.values())
                now = time.perf_counter()
                rate = number / (now - started)
                eta = (len(todo) - number) / rate
                self.log(
                    f"[{number}/{len(todo)}] {ids[index]} {status} "
                    f"{now - sample_started:.2f} s | {rate:.2f} samples/s | ETA {_clock(eta)}"
                )
        summary.total_seconds = time.perf_counter() - started
        summary.render_seconds = self.timer.seconds
        return summary

    def _ok_record(self, index: int, name: str) -> dict[str, Any]:
        files = {kind: f"{SAMPLES_FOLDER}/{name}.{suffix}" for kind, suffix in FILE_KINDS.items()}
        return {"index": index, "id": name, "status": "ok", "files": files}

    def _build_scene(self) -> None:
        s = self.settings
        bpy.ops.wm.read_homefile(use_empty=True)
        scene = bpy.context.scene
        self.scene = scene
        from .. import head as blender_head

        self.head = blender_head.import_head(
            scene, self.model_file, n_shape=self.n_shape, n_expression=self.n_expression
        )
        self.device_choice = cycles_device.select_cycles_device(scene, s.device)
        passes.prepare_scene(scene, s.resolution[0], s.resolution[1], s.samples)
        material.ensure_head_material(self.head, self.texture_model)
        material.assign_labels(self.head, self.flame_folder)

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

    def world_to_camera(self) -> np.ndarray:
        """OpenCV world-to-camera ``(4, 4)`` of the scene camera, world = FLAME model space."""
        blender_world_to_camera = np.asarray(
            core_camera.world_to_camera_from_blender(np.array(self.scene.camera.matrix_world)), np.float64
        )
        return blender_world_to_camera @ np.array(self.head.matrix_world)

    def camera_contour_landmarks(self, params: FlameParameters, vertices: np.ndarray) -> dict[str, np.ndarray]:
        """The chosen landmark sets that hold the yaw-dependent jaw contour, with the row chosen
        for the scene's camera (``core.landmarks.landmarks_for_camera``); the choice is kept in
        ``self.contour_choice`` for the sample's record."""
        dynamic = {name: key for name, key in self.landmark_names.items() if key in ("dynamic_68", "dynamic_contour")}
        self.contour_choice = None
        if not dynamic:
            return {}
        points, self.contour_choice = core_landmarks.landmarks_for_camera(
            self.forward.landmarks, vertices, params.global_pose, params.neck_pose,
            self.world_to_camera(), studio.head_centre(vertices),
        )
        return {name: np.asarray(points[key], np.float64).reshape(-1, 3) for name, key in dynamic.items()}

    @contextmanager
    def _phase(self, name: str):
        started = time.perf_counter()
        try:
            yield
        finally:
            self.phase_seconds[name] = self.phase_seconds.get(name, 0.0) + time.perf_counter() - started

    def render_sample(self, index: int, name: str, samples_dir: Path) -> None:
        s = self.settings
        scene, head = self.scene, self.head
        from .. import head as blender_head

        with self._phase("parameters and forward pass"):
            spec = self.spec(index)
            blender_head.set_parameters(head, spec.parameters)
            vertices, landmark_points = self.forward_landmarks(spec.parameters)
            mesh_error = np.abs(studio.evaluated_vertices(head) - vertices).max()
        if mesh_error > 1e-4:
            raise RuntimeError(
                f"the Blender mesh differs from FLAME.forward by {mesh_error * 1000:.3f} mm"
            )
        with self._phase("albedo and studio"):
            self._set_scene(spec, vertices)
            landmark_points.update(self.camera_contour_landmarks(spec.parameters, vertices))
        with self._phase("picture (render + save)"):
            paths = {kind: samples_dir / f"{name}.{suffix}" for kind, suffix in FILE_KINDS.items()}
            atomic_write_with(
                paths["rgb"],
                lambda temporary: passes.render_picture(
                    scene, temporary, s.samples, s.transparent, s.denoise
                ),
            )
        with self._phase("ground truth (render + read)"):
            truth = passes.render_ground_truth(scene, samples_dir / f"{name}.passes.exr")
        with self._phase("write outputs"):
            self._write_sample(index, name, spec, truth, landmark_points, paths)

    def _set_scene(self, spec: SampleSpec, vertices: np.ndarray) -> None:
        s = self.settings
        scene, head = self.scene, self.head
        if self.texture_model is not None:
            material.update_albedo_image(head, self.texture_model, spec.albedo)
        studio.setup_studio(
            scene,
            head,
            studio.StudioSettings(
                focal_length=spec.camera.focal_length,
                distance=spec.camera.distance,
                azimuth=spec.camera.azimuth,
                elevation=spec.camera.elevation,
                light_azimuth=spec.light.azimuth,
                light_elevation=spec.light.elevation,
                light_power=spec.light.power,
                fill_ratio=spec.light.fill_ratio,
                world_strength=spec.light.world_strength,
                transparent=s.transparent,
            ),
            centre=studio.head_centre(vertices),
        )
        scene.cycles.seed = spec.index % (2**31)

    def _write_sample(self, index, name, spec, truth, landmark_points, paths) -> None:
        s = self.settings
        scene, head, camera = self.scene, self.head, self.scene.camera
        width, height = s.resolution
        data = camera.data
        fx, fy, cx, cy = core_camera.intrinsics_from_blender(
            data.lens, data.sensor_width, data.sensor_height, data.sensor_fit, width, height,
            data.shift_x, data.shift_y,
            scene.render.pixel_aspect_x / scene.render.pixel_aspect_y,
        )
        blender_world_to_camera = np.asarray(
            core_camera.world_to_camera_from_blender(np.array(camera.matrix_world)), np.float64
        )
        world_to_camera = blender_world_to_camera @ np.array(head.matrix_world)

        normals = truth.normals_world @ blender_world_to_camera[:3, :3].T.astype(np.float32)
        write_exr(paths["depth"], {"Y": truth.depth})
        write_exr(paths["normal"], {"R": normals[..., 0], "G": normals[..., 1], "B": normals[..., 2]})
        write_png(paths["labels"], truth.labels)

        landmarks = {}
        camera_position = np.array(camera.matrix_world)[:3, 3]
        for set_name, points in landmark_points.items():
            projected = project_landmarks(
                points, world_to_camera, (fx, fy, cx, cy), (width, height), truth.depth, normals
            )
            landmarks[set_name] = {"embedding": self.landmark_names[set_name], **projected.to_dict()}
            reached, occluded_by = visibility.ray_visibility(head, camera_position, points)
            landmarks[set_name]["visible_ray"] = (reached & projected.in_frame).tolist()
            landmarks[set_name]["occluded_by_m"] = occluded_by.tolist()
            if self.landmark_names[set_name].startswith("dynamic") and self.contour_choice is not None:
                landmarks[set_name]["contour"] = self.contour_choice.to_dict()
        record = {
            "id": name,
            "index": index,
            "seed": s.seed,  # the albedo, camera and light always come from (seed, index)
            "flame_source": "random" if self.parameters is None else "params",
            "flame": spec.parameters.to_dict(),
            "albedo": {
                "model": self.texture_model.kind if self.texture_model else None,
                "coefficients": spec.albedo.tolist(),
                **({"note": self.albedo_note} if self.albedo_note else {}),
            },
            "camera": {
                "intrinsics": {
                    "fx": fx, "fy": fy, "cx": cx, "cy": cy, "width": width, "height": height,
                },
                "K": intrinsic_matrix(fx, fy, cx, cy).tolist(),
                "world_to_camera": world_to_camera.tolist(),
                "focal_length_mm": spec.camera.focal_length,
                "sensor_width_mm": spec.camera.sensor_width,
                "distance_m": spec.camera.distance,
                "azimuth_deg": spec.camera.azimuth,
                "elevation_deg": spec.camera.elevation,
                "blender_camera_matrix_world": [list(row) for row in camera.matrix_world],
            },
            "light": {
                "azimuth_deg": spec.light.azimuth,
                "elevation_deg": spec.light.elevation,
                "key_power_w": spec.light.power,
                "fill_ratio": spec.light.fill_ratio,
                "world_strength": spec.light.world_strength,
            },
            "landmarks": landmarks,
            "files": {kind: path.name for kind, path in paths.items() if kind != "json"},
            "labels": {str(value): label for label, value in LABELS.items()},
            "conventions": CONVENTIONS,
        }
        record.update(spec.extra)  # what an adapter adds (a tracked sequence's frame_id)
        atomic_write_text(paths["json"], json.dumps(record, indent=1) + "\n")

    # -- after the run ----------------------------------------------------------------------

    def write_contact_sheet(self, path: str | Path, max_samples: int = 16) -> Path | None:
        """A sheet of the finished samples (picture with landmarks, labels, normals), or None."""
        out = Path(self.settings.out)
        tiles = []
        count = 0
        for index in shard_indices(self.settings.count, self.settings.shard, self.settings.shards):
            name = sample_id(index, self.settings.count)
            record_path = out / SAMPLES_FOLDER / f"{name}.json"
            if not record_path.is_file():
                continue
            tiles.extend(sample_tiles(record_path))
            count += 1
            if count >= max_samples:
                break
        if not tiles:
            return None
        return write_png(path, contact_sheet(tiles, columns=6))


def sample_tiles(record_path: Path) -> list[np.ndarray]:
    """Picture with landmarks, coloured labels and coloured normals of one finished sample."""
    record = json.loads(record_path.read_text(encoding="utf-8"))
    folder = record_path.parent
    files = record["files"]
    picture = read_png(folder / files["rgb"])
    preferred = "ibug68" if "ibug68" in record["landmarks"] else next(iter(record["landmarks"]), None)
    if preferred is not None:
        landmarks = record["landmarks"][preferred]
        points = np.array(
            [p if p is not None else [math.nan, math.nan] for p in landmarks["points_2d"]], float
        )
        picture = draw_landmarks(picture, points, np.array(landmarks["visible"], bool))
    labels = colourize_labels(read_png(folder / files["labels"]))
    normal = read_exr(folder / files["normal"])
    normals = np.stack([normal["R"], normal["G"], normal["B"]], axis=-1)
    # camera-space normals face the camera (-z): flip y and z for the usual blue-ish normal map
    normals = normals * np.array([1.0, -1.0, -1.0], np.float32)
    return [picture, labels, colourize_normals(normals)]


def _clock(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    return f"{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
