"""Contact sheets of a batch render's finished samples: per sample, the picture with its
landmarks, the coloured labels and the coloured normals."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ...core.render.contact_sheet import (
    colourize_labels,
    colourize_normals,
    contact_sheet,
    draw_landmarks,
)
from ...core.render.exr import read_exr
from ...core.render.png import read_png, write_png


def write_contact_sheet(record_paths: Iterable[Path], path: str | Path, max_samples: int = 16) -> Path | None:
    """A sheet of the samples whose JSON ``record_paths`` exist (at most ``max_samples``),
    written to ``path``; None when there is none."""
    tiles = []
    count = 0
    for record_path in record_paths:
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
