"""Contact sheets: a grid of rendered samples with their landmarks drawn (numpy only).

Also the small image helpers a sheet needs: label images in colour, normal maps as colours,
RGBA composited over a grey background.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .segmentation import LABELS

#: RGB colour per label value (background dark grey), uint8 (256, 3); unknown values are white
LABEL_COLOURS = np.full((256, 3), 255, np.uint8)
LABEL_COLOURS[: len(LABELS)] = [
    (40, 40, 40),  # background
    (230, 180, 150),  # face
    (60, 120, 230),  # eyes
    (240, 200, 60),  # ears
    (150, 90, 200),  # neck
    (110, 70, 40),  # scalp
    (220, 50, 70),  # lips
    (70, 190, 110),  # nose
]
VISIBLE_COLOUR = (40, 255, 80)
OCCLUDED_COLOUR = (255, 60, 60)


def to_rgb(image: np.ndarray, background: tuple[int, int, int] = (128, 128, 128)) -> np.ndarray:
    """``(H, W)``, ``(H, W, 3)`` or ``(H, W, 4)`` uint8 -> ``(H, W, 3)`` uint8, alpha over ``background``."""
    image = np.asarray(image)
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    if image.shape[2] == 4:
        alpha = image[:, :, 3:4].astype(np.float32) / 255.0
        mixed = image[:, :, :3] * alpha + np.asarray(background, np.float32) * (1.0 - alpha)
        return np.clip(np.rint(mixed), 0, 255).astype(np.uint8)
    return image[:, :, :3].astype(np.uint8)


def colourize_labels(labels: np.ndarray) -> np.ndarray:
    """``(H, W)`` label values -> ``(H, W, 3)`` uint8 colours (``LABEL_COLOURS``)."""
    return LABEL_COLOURS[np.asarray(labels, np.uint8)]


def colourize_normals(normals: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` unit normals -> ``(H, W, 3)`` uint8 (``(n + 1) / 2``); zero normals stay black."""
    normals = np.asarray(normals, np.float32)
    colours = np.clip((normals + 1.0) * 127.5, 0, 255)
    colours[np.all(normals == 0, axis=2)] = 0
    return np.rint(colours).astype(np.uint8)


def draw_points(
    image: np.ndarray,
    points: np.ndarray,
    colours: Sequence[tuple[int, int, int]] | tuple[int, int, int],
    radius: float = 1.5,
) -> np.ndarray:
    """A copy of ``(H, W, 3)`` uint8 ``image`` with filled discs at ``(L, 2)`` pixel positions.

    Positions use the project's pixel convention: (0, 0) is the top-left corner of the image,
    the first pixel's centre is (0.5, 0.5). One colour for all, or one per point.
    """
    out = np.array(image, np.uint8, copy=True)
    height, width = out.shape[:2]
    points = np.asarray(points, np.float64).reshape(-1, 2)
    per_point = np.asarray(colours, np.uint8).reshape(-1, 3)
    if len(per_point) == 1:
        per_point = np.repeat(per_point, len(points), axis=0)
    reach = int(np.ceil(radius))
    offsets = np.arange(-reach, reach + 1)
    for (x, y), colour in zip(points, per_point, strict=True):
        if not (np.isfinite(x) and np.isfinite(y)):
            continue
        columns = np.floor(x).astype(int) + offsets
        rows = np.floor(y).astype(int) + offsets
        grid_y, grid_x = np.meshgrid(rows, columns, indexing="ij")
        inside = (
            ((grid_x + 0.5 - x) ** 2 + (grid_y + 0.5 - y) ** 2 <= radius**2)
            & (grid_x >= 0)
            & (grid_x < width)
            & (grid_y >= 0)
            & (grid_y < height)
        )
        out[grid_y[inside], grid_x[inside]] = colour
    return out


def draw_landmarks(
    image: np.ndarray, points: np.ndarray, visible: np.ndarray | None = None, radius: float | None = None
) -> np.ndarray:
    """``image`` with ``(L, 2)`` landmarks: visible ones green, occluded ones red."""
    rgb = to_rgb(image)
    if radius is None:
        radius = max(1.0, min(rgb.shape[:2]) / 160.0)
    visible = np.ones(len(points), bool) if visible is None else np.asarray(visible, bool)
    colours = np.where(visible[:, None], VISIBLE_COLOUR, OCCLUDED_COLOUR).astype(np.uint8)
    return draw_points(rgb, points, colours, radius)


def contact_sheet(
    tiles: Sequence[np.ndarray], columns: int = 4, gap: int = 4, background: int = 255
) -> np.ndarray:
    """Tiles (``(H, W)``, ``(H, W, 3)`` or ``(H, W, 4)`` uint8, any sizes) in a grid, row by row.

    Each cell is as large as the largest tile; tiles are centred in their cells.
    """
    if not tiles:
        raise ValueError("a contact sheet needs at least one tile")
    rgb_tiles = [to_rgb(tile) for tile in tiles]
    cell_h = max(tile.shape[0] for tile in rgb_tiles)
    cell_w = max(tile.shape[1] for tile in rgb_tiles)
    columns = max(1, min(columns, len(rgb_tiles)))
    rows = -(-len(rgb_tiles) // columns)
    sheet = np.full(
        (rows * cell_h + (rows + 1) * gap, columns * cell_w + (columns + 1) * gap, 3),
        background,
        np.uint8,
    )
    for number, tile in enumerate(rgb_tiles):
        row, column = divmod(number, columns)
        top = gap + row * (cell_h + gap) + (cell_h - tile.shape[0]) // 2
        left = gap + column * (cell_w + gap) + (cell_w - tile.shape[1]) // 2
        sheet[top : top + tile.shape[0], left : left + tile.shape[1]] = tile
    return sheet
