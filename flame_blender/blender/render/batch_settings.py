"""What a batch is asked to do, and checking it before anything is written: :class:`BatchSettings`,
:class:`BatchInputError` (exit status 2) and :class:`BatchValidation`, the part of
:class:`.batch.BatchRenderer` that loads the model and checks every input (:meth:`prepare`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ... import core
from ...core.errors import FlameFileError, FlameParameterError
from ...core.io.atomic import atomic_write_text
from ...core.model import landmarks as core_landmarks
from ...core.model.parameters import FlameParameters, load_parameter_sequence
from ...core.render.dataset import SamplingRanges
from . import device as cycles_device
from . import material

FORMAT_VERSION = 1
SAMPLES_FOLDER = "samples"
#: ``--landmarks`` names -> landmark sets of core's forward pass (``FlameNumpy.run``), first
#: found wins: core's one definition (``core.landmarks.LANDMARK_SET_SOURCES``). ``ibug68`` is the
#: fixed 68-point embedding; ``ibug68_dynamic`` has the jaw contour that slides with the head's
#: yaw relative to the camera (DECA / RingNet style), static 51 for the rest.
LANDMARK_SETS: dict[str, tuple[str, ...]] = core_landmarks.LANDMARK_SET_SOURCES
DEFAULT_LANDMARK_SETS = ("mediapipe", "ibug68")
#: Denoiser prefilter of the pictures. "FAST" treats the albedo and normal guide passes as
#: clean, which they are for a head without hair, depth of field or motion blur; it skips two
#: of the denoiser's three network runs per image (Blender's default, "ACCURATE", denoises the
#: guides first).
DENOISE_PREFILTERS = ("FAST", "ACCURATE", "NONE")
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


class BatchValidation:
    """Checking a batch's inputs (:meth:`prepare`); a part of :class:`.batch.BatchRenderer`."""

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
