"""What each sample of a synthetic dataset shows: head parameters, albedo, camera and light.

Every random draw of sample ``i`` comes from generators seeded with ``(seed, i, group)`` only, so
a sample is the same whatever the number of samples, the shard split or the order of rendering,
and each group (FLAME parameters, albedo, camera, light) keeps its values when another group's
range or size changes.

The ranges (:class:`SamplingRanges`, settable from the batch renderer's ``--ranges`` JSON):

- FLAME parameters: ``FlameParameters.random`` with ``shape_sigma``, ``expression_sigma`` and
  ``pose_scale`` (which scales ``parameters.RANDOM_POSE_SIGMA``); draws clipped at 3 sigma.
- albedo: texture-model coefficients ~ N(0, ``albedo_sigma``²), clipped at 3 sigma.
- camera: orbits the head's centre; ``camera_azimuth`` (degrees, 0 = in front of the face,
  positive = towards the head's left), ``camera_elevation`` (degrees, positive = above),
  ``focal_length`` (mm, 36 mm wide sensor), and ``field_of_view`` (metres covered by the image
  width at the head's centre) from which the distance follows, so the head fills a similar part
  of the image whatever the focal length.
- light: a key light at ``light_azimuth`` / ``light_elevation`` (degrees, around the camera
  direction), ``light_power`` (W), a fill light on the other side at ``fill_ratio`` of the key,
  and a uniform world of ``world_strength``.

Uniform ranges are ``(low, high)`` pairs; set both equal to fix a value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

from ..errors import FlameParameterError
from ..model.parameters import FlameParameters

# Independent random streams per group (the third seed word).
_FLAME_STREAM, _ALBEDO_STREAM, _CAMERA_STREAM, _LIGHT_STREAM = 0, 1, 2, 3


@dataclass(frozen=True)
class SamplingRanges:
    """Settable ranges of the random dataset (see the module docstring)."""

    shape_sigma: float = 1.0
    expression_sigma: float = 1.0
    pose_scale: float = 1.0
    albedo_sigma: float = 1.0
    camera_azimuth: tuple[float, float] = (-35.0, 35.0)
    camera_elevation: tuple[float, float] = (-15.0, 20.0)
    focal_length: tuple[float, float] = (35.0, 85.0)
    field_of_view: tuple[float, float] = (0.34, 0.42)
    light_azimuth: tuple[float, float] = (-70.0, 70.0)
    light_elevation: tuple[float, float] = (10.0, 50.0)
    light_power: tuple[float, float] = (20.0, 60.0)
    fill_ratio: tuple[float, float] = (0.15, 0.5)
    world_strength: tuple[float, float] = (0.15, 0.5)

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if isinstance(value, tuple | list):
                if len(value) != 2 or not all(np.isfinite(v) for v in value) or value[0] > value[1]:
                    raise FlameParameterError(
                        f"range {item.name}: expected [low, high] with low <= high, got {list(value)}"
                    )
                object.__setattr__(self, item.name, (float(value[0]), float(value[1])))
            elif not np.isfinite(value) or value < 0:
                raise FlameParameterError(f"{item.name}: expected a number >= 0, got {value!r}")
        if self.focal_length[0] <= 0 or self.field_of_view[0] <= 0:
            raise FlameParameterError("focal_length and field_of_view must be positive")

    def to_dict(self) -> dict[str, Any]:
        return {key: list(value) if isinstance(value, tuple) else value for key, value in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SamplingRanges:
        """From a mapping of some of the fields (the others keep their defaults)."""
        if not isinstance(data, Mapping):
            raise FlameParameterError(f"ranges: expected an object, got {type(data).__name__}")
        known = {item.name for item in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise FlameParameterError(f"unknown ranges {unknown}; expected some of {sorted(known)}")
        values = {}
        for key, value in data.items():
            try:
                values[key] = tuple(value) if isinstance(value, Sequence) else float(value)
            except (TypeError, ValueError):
                raise FlameParameterError(f"range {key}: expected numbers, got {value!r}") from None
        return cls(**values)


@dataclass(frozen=True)
class CameraSample:
    """A camera orbiting the head's centre (degrees, mm, metres)."""

    azimuth: float
    elevation: float
    focal_length: float
    distance: float
    sensor_width: float = 36.0


@dataclass(frozen=True)
class LightSample:
    """A key light around the camera direction (degrees, W), a fill light and the world."""

    azimuth: float
    elevation: float
    power: float
    fill_ratio: float
    world_strength: float


@dataclass
class SampleSpec:
    """Everything one rendered sample shows."""

    index: int
    parameters: FlameParameters
    albedo: np.ndarray  # (n_albedo,) texture-model coefficients
    camera: CameraSample
    light: LightSample
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "flame": self.parameters.to_dict(),
            "albedo": self.albedo.tolist(),
            "camera": asdict(self.camera),
            "light": asdict(self.light),
        }


def sample_rng(seed: int, index: int, stream: int) -> np.random.Generator:
    """The random generator of one group of one sample: depends on (seed, index, stream) only."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(index), int(stream)]))


def sample_spec(
    seed: int,
    index: int,
    n_shape: int,
    n_expression: int,
    n_albedo: int = 0,
    ranges: SamplingRanges | None = None,
    parameters: FlameParameters | None = None,
) -> SampleSpec:
    """Sample ``index`` of the dataset of ``seed``.

    ``parameters`` (one entry of a ``--params`` file) replaces the random FLAME parameters; the
    albedo, camera and light are still drawn from ``(seed, index)``.
    """
    if index < 0:
        raise FlameParameterError(f"sample index must be >= 0, got {index}")
    ranges = ranges or SamplingRanges()
    if parameters is None:
        parameters = FlameParameters.random(
            sample_rng(seed, index, _FLAME_STREAM),
            n_shape,
            n_expression,
            shape_sigma=ranges.shape_sigma,
            expression_sigma=ranges.expression_sigma,
            pose_scale=ranges.pose_scale,
        )
    else:
        parameters = parameters.resized(n_shape, n_expression)
    albedo_rng = sample_rng(seed, index, _ALBEDO_STREAM)
    albedo = np.clip(albedo_rng.standard_normal(n_albedo), -3.0, 3.0) * ranges.albedo_sigma

    camera_rng = sample_rng(seed, index, _CAMERA_STREAM)
    focal = _uniform(camera_rng, ranges.focal_length)
    width_at_head = _uniform(camera_rng, ranges.field_of_view)
    camera = CameraSample(
        azimuth=_uniform(camera_rng, ranges.camera_azimuth),
        elevation=_uniform(camera_rng, ranges.camera_elevation),
        focal_length=focal,
        distance=width_at_head * focal / 36.0,
    )
    light_rng = sample_rng(seed, index, _LIGHT_STREAM)
    light = LightSample(
        azimuth=_uniform(light_rng, ranges.light_azimuth),
        elevation=_uniform(light_rng, ranges.light_elevation),
        power=_uniform(light_rng, ranges.light_power),
        fill_ratio=_uniform(light_rng, ranges.fill_ratio),
        world_strength=_uniform(light_rng, ranges.world_strength),
    )
    return SampleSpec(index=index, parameters=parameters, albedo=albedo, camera=camera, light=light)


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` -> ``(K, N)`` with ``0 <= K < N`` (K counts from 0, like ``$SLURM_ARRAY_TASK_ID``
    of ``--array=0-(N-1)``)."""
    try:
        k_text, n_text = text.split("/")
        k, n = int(k_text), int(n_text)
    except ValueError:
        raise FlameParameterError(f"--shard {text!r}: expected K/N, e.g. 0/4") from None
    if n < 1 or not 0 <= k < n:
        raise FlameParameterError(f"--shard {text!r}: expected 0 <= K < N (K counts from 0)")
    return k, n


def shard_indices(count: int, shard: int = 0, shards: int = 1) -> range:
    """The sample indices shard ``shard`` of ``shards`` renders: every ``shards``-th from ``shard``.

    Round-robin, so each shard gets a similar mix of samples and the union over all shards is
    ``range(count)`` exactly once.
    """
    return range(shard, count, shards)


def sample_id(index: int, count: int) -> str:
    """Zero-padded sample name (at least 6 digits) that sorts in index order."""
    return f"{index:0{max(6, len(str(max(count - 1, 0))))}d}"


def _uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return float(rng.uniform(bounds[0], bounds[1]))
