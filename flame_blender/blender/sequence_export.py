"""Export a head's animation: read the values its F-curves give on each keyed frame, then write
them with :func:`core.sequences.save_sequence` (VHAP npz, ``.jsonl``) or as per-frame vertices."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import FlameParameterError
from ..core.io.extra_blendshapes import KNOWN_EXTRA_BLENDSHAPES, find_extra_blendshapes
from ..core.model.parameters import POSE_SIZES
from ..core.sequences import FlameSequence, save_sequence, save_vertices
from . import head, runtime

EXPORT_FORMATS = ("VHAP", "JSONL", "NPZ_VERTICES")


def _curves(id_data: Any) -> dict[tuple[str, int], Any]:
    curves = head._fcurves(id_data)
    if curves is None:
        raise FlameParameterError(f"{id_data.name}: its animation uses NLA tracks or drivers; bake it to one action first")
    return {(curve.data_path, curve.array_index): curve for curve in curves}


def _keyed_frames(curves: list[Any]) -> np.ndarray:
    frames: set[float] = set()
    for curve in curves:
        co = np.empty(2 * len(curve.keyframe_points), dtype=np.float32)
        curve.keyframe_points.foreach_get("co", co)
        frames.update(co[0::2].tolist())
    return np.array(sorted(frames))


def sequence_from_head(obj: Any, scene: Any) -> FlameSequence:
    """The head's animation as a :class:`FlameSequence`: one frame per keyed frame (the scene's
    range when nothing is keyed); frame ids continue the imported file's numbering."""
    if not head.is_head(obj):
        raise FlameParameterError(f"{getattr(obj, 'name', obj)!r} is not a FLAME head")
    key_curves, object_curves = _curves(obj.data.shape_keys), _curves(obj)
    frames = _keyed_frames([*key_curves.values(), *object_curves.values()])
    if frames.size == 0:
        frames = np.arange(scene.frame_start, scene.frame_end + 1, dtype=np.float64)
    blocks = obj.data.shape_keys.key_blocks

    def channel(curve: Any, constant: float) -> np.ndarray:
        if curve is None:
            return np.full(frames.shape[0], constant)
        return np.array([curve.evaluate(f) for f in frames])

    n_shape, n_expression = obj.flame.n_shape, obj.flame.n_expression
    names = [head.shape_key_name(i) for i in range(n_shape)] + [head.expression_key_name(i) for i in range(n_expression)]
    coefficients = np.stack([
        channel(key_curves.get((f'key_blocks["{name}"].value', 0)), blocks[name].value) for name in names
    ], axis=1) if names else np.zeros((frames.shape[0], 0))
    values = {"shape": coefficients[:, :n_shape], "expression": coefficients[:, n_shape:]}
    for name, size in POSE_SIZES.items():
        current = getattr(obj.flame, name)
        values[name] = np.stack([channel(object_curves.get((f"flame.{name}", i)), current[i]) for i in range(size)], axis=1)
    info = obj.flame_sequence
    first_id = info.first_frame_id if info.frames else 0
    start = info.frame_start if info.frames else frames[0]
    ids = np.round(frames - start + first_id).astype(np.int64)
    extra_names, extra = _extra_channels(obj, blocks, key_curves, object_curves, channel)
    fps = scene.render.fps / scene.render.fps_base
    return FlameSequence(**values, frame_ids=ids, fps=fps, format="FLAME_BLENDER",
                         extra_names=extra_names if extra is not None else (), extra_params=extra,
                         static_offset=_static_offset(obj), source=None)


def _extra_channels(obj: Any, blocks: Any, key_curves: dict, object_curves: dict, channel) -> tuple[tuple, np.ndarray | None]:
    """Extra coefficients ``(F, E)``: from the head's eyelid shape keys (applied to the mesh), else
    from its custom properties (kept when the model has no eyelid blend shapes)."""
    names = tuple(name for name in KNOWN_EXTRA_BLENDSHAPES if name in blocks)
    if names:
        columns = [channel(key_curves.get((f'key_blocks["{n}"].value', 0)), 0.0 if blocks[n].mute else blocks[n].value)
                   for n in names]
        return names, np.stack(columns, axis=1)
    names = tuple(name for name in KNOWN_EXTRA_BLENDSHAPES if name in obj)
    if not names:
        return (), None
    return names, np.stack([channel(object_curves.get((f'["{n}"]', 0)), float(obj[n])) for n in names], axis=1)


def _static_offset(obj: Any) -> np.ndarray | None:
    """``(V, 3)`` offsets the head's ``flame_offsets`` key adds (delta × value), or None."""
    key = obj.data.shape_keys
    block = key.key_blocks.get(head.OFFSETS_KEY)
    if block is None or block.mute or block.value == 0.0:
        return None
    count = 3 * len(block.data)
    co, base = np.empty(count, dtype=np.float32), np.empty(count, dtype=np.float32)
    block.data.foreach_get("co", co)
    key.reference_key.data.foreach_get("co", base)
    return (block.value * (co.astype(np.float64) - base)).reshape(-1, 3)


def export_sequence(obj: Any, scene: Any, filepath: str | Path, format: str) -> tuple[Path, int]:
    """Write the head's animation to ``filepath`` in ``format`` (:data:`EXPORT_FORMATS`).
    Returns the path and the number of frames."""
    format = format.upper()
    if format not in EXPORT_FORMATS:
        raise FlameParameterError(f"format {format!r}: expected one of {EXPORT_FORMATS}")
    sequence = sequence_from_head(obj, scene)
    path = Path(filepath)
    if format in ("VHAP", "JSONL"):
        return save_sequence(sequence, path, format), len(sequence)
    vertices, landmarks = sequence_vertices(obj.flame.model_path, sequence)
    return save_vertices(path, vertices, sequence.frame_ids, landmarks, sequence.fps), len(sequence)


_models: dict = {}


def _vertex_model(model_path: str, sequence: FlameSequence):
    """A float32 ``FlameNumpy`` for the sequence, cached. With a fixed identity its shaped
    template replaces ``v_template`` and identity components drop out: the same vertices (the
    joint regressor is linear), a quarter of the blending work per frame."""
    from ..core.model.flame_numpy import FlameNumpy, load_landmarks_beside

    key = runtime.model_key(model_path)
    fixed = sequence.fixed_shape and len(sequence) > 1
    extras = {}
    if sequence.extra_names:  # applied to the mesh only when the model has their blend shapes
        found = find_extra_blendshapes(Path(key).parent)
        if all(name in found for name in sequence.extra_names):
            extras = {name: found[name] for name in sequence.extra_names}
    cache_key = (key, sequence.n_shape, sequence.n_expression, sequence.shape[0].tobytes() if fixed else None,
                 tuple(extras))
    model = _models.get(cache_key)
    if model is None:
        source = dict(runtime.get_model(key))
        n_shape = sequence.n_shape
        if fixed:
            directions = np.asarray(source["shapedirs"])[:, :, :n_shape]
            source["v_template"] = np.asarray(source["v_template"], dtype=np.float64) + directions @ sequence.shape[0]
            n_shape = 0
        landmarks = load_landmarks_beside(Path(key).parent)
        _models.clear()  # one model at a time: each holds the model's arrays
        model = _models[cache_key] = FlameNumpy(source, n_shape=n_shape, n_expression=sequence.n_expression,
                                                dtype=np.float32, landmarks=landmarks, extra_blendshapes=extras)
    return model, fixed


def sequence_vertices(model_path: str, sequence: FlameSequence, chunk: int = 250) -> tuple[np.ndarray, dict]:
    """Posed vertices ``(F, V, 3)`` float32 (FLAME space, metres) and landmarks ``{name: (F, L, 3)}``
    of every frame, by the core forward pass in chunks."""
    model, fixed = _vertex_model(model_path, sequence)
    vertices, landmarks = [], {}
    for start in range(0, len(sequence), chunk):
        part = slice(start, start + chunk)
        shape = {} if fixed else {"shape_params": sequence.shape[part]}
        more = {}
        if model.extra_names:
            more["extra_params"] = sequence.extra_params[part]
        if sequence.static_offset is not None:  # (exported heads have no dynamic offsets)
            more["offsets"] = np.broadcast_to(sequence.static_offset[: model.arrays.n_vertices],
                                              (sequence.expression[part].shape[0], model.arrays.n_vertices, 3))
        out = model.run(**shape, expression_params=sequence.expression[part],
                        **{name: getattr(sequence, name)[part] for name in POSE_SIZES}, **more)
        vertices.append(np.asarray(out.vertices, dtype=np.float32))
        for name, points in out.landmarks.items():
            landmarks.setdefault(name, []).append(np.asarray(points, dtype=np.float32))
    return np.concatenate(vertices), {name: np.concatenate(parts) for name, parts in landmarks.items()}
