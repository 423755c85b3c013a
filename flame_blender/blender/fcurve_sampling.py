"""The values of many F-curves at one frame, bit for bit as Blender's animation system gives them.

A tracked sequence keys 118 to 418 channels on every frame with linear interpolation, and
calling ``FCurve.evaluate`` on each from Python costs about 0.3 ms a frame. For curves of plain
linear (or constant) keys, no modifiers and constant extrapolation, :class:`CurveSampler` reads
the keys once and evaluates all of them with NumPy, in float32 and in the order of operations of
Blender's ``fcurve_eval_keyframes``: at or beyond the first or last key its value; a key within
0.0001 frames of the time gives its value; between keys ``change * time / duration + begin``.
Every curve is checked against ``FCurve.evaluate`` when the sampler is built (at each key, and
at several points between keys and outside them), and a curve that differs in any bit, or any
other kind of curve, is evaluated by ``FCurve.evaluate`` every frame instead.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Blender's keyframe search treats a key this close (frames) to the time as the time itself.
KEY_THRESHOLD = np.float32(0.0001)
_CONSTANT, _LINEAR = 0, 1
#: Keys (and the points between them) at which a new sampler compares itself with Blender.
CHECKED_KEYS = 12  # Keyframe.interpolation as foreach_get reads it


class CurveSampler:
    """Evaluates ``curves`` (F-curves, in order) at a frame: :meth:`values`. Keeps only numbers
    and positions, never the curves (Python F-curve objects may be freed)."""

    def __init__(self, curves: Sequence) -> None:
        groups: dict[bytes, tuple[np.ndarray, list[int], list[np.ndarray], list[np.ndarray]]] = {}
        self.evaluated: list[int] = []  # positions of the curves sampled by FCurve.evaluate
        for position, curve in enumerate(curves):
            keys = _linear_keys(curve)
            if keys is None:
                self.evaluated.append(position)
                continue
            times, values, interpolation = keys
            group = groups.setdefault(times.tobytes(), (times, [], [], []))
            group[1].append(position)
            group[2].append(values)
            group[3].append(interpolation)
        self.groups = [
            (times, np.array(positions), np.array(values), np.array(interpolation) == _CONSTANT)
            for times, positions, values, interpolation in groups.values()
        ]
        self.count = len(curves)
        self._check(curves)

    def values(self, curves: Sequence, chosen: Sequence[int], frame: float) -> np.ndarray:
        """``(len(chosen),)`` float32: the value at ``frame`` of each ``curves[i]``, ``i`` in
        ``chosen`` (the curves the sampler was built from, fetched afresh)."""
        out = np.empty(self.count, np.float32)
        time = np.float32(frame)
        for times, positions, values, constant in self.groups:
            out[positions] = _sample(times, values, constant, time)
        for position in self.evaluated:
            out[position] = curves[chosen[position]].evaluate(frame)
        return out

    def _check(self, curves: Sequence) -> None:
        """Move every table curve whose values differ from ``FCurve.evaluate`` to the evaluated
        ones (a Blender build whose arithmetic differs from this module's)."""
        for index, (times, positions, values, constant) in enumerate(self.groups):
            # the arithmetic is the same for every key and segment: a few of each (spread over
            # the range) tell whether this build of Blender computes as this module does
            keys = times[np.unique(np.linspace(0, len(times) - 1, min(len(times), CHECKED_KEYS)).astype(int))]
            middles = keys[:-1] + np.float32(0.37) * (keys[1:] - keys[:-1]) if len(keys) > 1 else keys[:0]
            frames = np.concatenate([keys, middles, keys[:1] - 1.5, keys[-1:] + 2.0, keys[:1] + 0.00005])
            wrong = np.zeros(len(positions), bool)
            for frame in frames.tolist():
                got = _sample(times, values, constant, np.float32(frame))
                want = np.array([curves[p].evaluate(frame) for p in positions], np.float32)
                wrong |= got.view(np.int32) != want.view(np.int32)
            if wrong.any():
                self.evaluated += positions[wrong].tolist()
                keep = ~wrong
                self.groups[index] = (times, positions[keep], values[keep], constant[keep])
        self.groups = [group for group in self.groups if len(group[1])]


def _linear_keys(curve) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """``(times (K,), values (K,), interpolation (K,))`` float32 of a curve of plain linear or
    constant keys, or None for anything else (modifiers, extrapolation, Bézier keys, keys
    closer than the search threshold allows)."""
    points = curve.keyframe_points
    count = len(points)
    if count == 0 or len(curve.modifiers) or curve.extrapolation != "CONSTANT":
        return None
    coordinates = np.empty(2 * count, np.float32)
    points.foreach_get("co", coordinates)
    interpolation = np.empty(count, np.int32)
    points.foreach_get("interpolation", interpolation)
    if not np.isin(interpolation[:-1], (_CONSTANT, _LINEAR)).all():
        return None
    times, values = coordinates[0::2].copy(), coordinates[1::2].copy()
    if count > 1 and not (np.diff(times) > 4 * KEY_THRESHOLD).all():
        return None
    return times, values, interpolation


def _sample(times: np.ndarray, values: np.ndarray, constant: np.ndarray, time: np.float32) -> np.ndarray:
    """Blender's keyframe evaluation at ``time`` for curves sharing key ``times (K,)``:
    ``values (C, K)``, ``constant (C, K)`` (interpolation of the segment starting at each key)."""
    if time <= times[0]:
        return values[:, 0]
    if time >= times[-1]:
        return values[:, -1]
    after = int(np.searchsorted(times, time))  # times[after - 1] < time <= times[after]
    for key in (after - 1, after):
        if abs(times[key] - time) <= KEY_THRESHOLD:
            return values[:, key]
    begin, end = values[:, after - 1], values[:, after]
    linear = (end - begin) * (time - times[after - 1]) / (times[after] - times[after - 1]) + begin
    return np.where(constant[:, after - 1], begin, linear)
