"""Segmentation labels for FLAME heads, built from the vertex masks in ``FLAME_masks.pkl``.

The label table (``LABELS``, written beside every batch as ``labels.json``):

=====  ==========  ====================================================================
value  name        FLAME masks
=====  ==========  ====================================================================
0      background  (no head)
1      face        face, forehead
2      eyes        left_eyeball, right_eyeball, left_eye_region, right_eye_region
3      ears        left_ear, right_ear
4      neck        neck, boundary
5      scalp       scalp
6      lips        lips
7      nose        nose
=====  ==========  ====================================================================

The masks overlap (``face`` contains the lips, the nose and the eye regions), so a vertex in
several masks takes the label that comes first in ``PRIORITY``: eyes, lips, nose, ears, face,
neck, scalp. "eyes" includes the eyelids (the eye regions) so that the eye landmarks, which lie
on the eyelid margin, fall on it. The broad ``eye_region`` mask (eyebrows and nose bridge too)
is not used. Vertices in no mask take the label of a neighbouring labelled vertex (spreading
along mesh edges); a part with no labelled vertex at all is "face".

A triangle takes the label shared by at least two of its corners, else its highest-priority
corner label: labels are rendered per triangle, so label images have no blended values.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

#: label name -> value in label images
LABELS: dict[str, int] = {
    "background": 0,
    "face": 1,
    "eyes": 2,
    "ears": 3,
    "neck": 4,
    "scalp": 5,
    "lips": 6,
    "nose": 7,
}
#: FLAME mask name -> label name
MASK_LABELS: dict[str, str] = {
    "left_eyeball": "eyes",
    "right_eyeball": "eyes",
    "left_eye_region": "eyes",
    "right_eye_region": "eyes",
    "lips": "lips",
    "nose": "nose",
    "left_ear": "ears",
    "right_ear": "ears",
    "face": "face",
    "forehead": "face",
    "neck": "neck",
    "boundary": "neck",
    "scalp": "scalp",
}
#: where masks overlap, the earlier label wins
PRIORITY: tuple[str, ...] = ("eyes", "lips", "nose", "ears", "face", "neck", "scalp")


def label_table() -> list[dict[str, object]]:
    """The label table as written to ``labels.json``: ``[{"value": 0, "name": "background", "masks": []}, ...]``."""
    return [
        {
            "value": value,
            "name": name,
            "masks": [mask for mask, label in MASK_LABELS.items() if label == name],
        }
        for name, value in LABELS.items()
    ]


def vertex_labels(
    masks: Mapping[str, np.ndarray], n_vertices: int, faces: np.ndarray | None = None
) -> np.ndarray:
    """Label value of every vertex, ``(n_vertices,)`` uint8 (never 0 = background).

    Args:
        masks: FLAME mask name -> vertex indices (``load_flame_masks``); unknown names are ignored.
        n_vertices: 5023 for FLAME.
        faces: ``(F, 3)`` triangles; when given, unmasked vertices take a neighbour's label.
    """
    rank = np.full(n_vertices, len(PRIORITY), np.int64)  # lower rank = higher priority
    for mask_name, indices in masks.items():
        label = MASK_LABELS.get(mask_name)
        if label is None:
            continue
        indices = np.asarray(indices, np.int64).reshape(-1)
        indices = indices[(indices >= 0) & (indices < n_vertices)]
        np.minimum.at(rank, indices, PRIORITY.index(label))
    if faces is not None:
        rank = _spread_along_edges(rank, np.asarray(faces, np.int64))
    values = np.array([LABELS[name] for name in PRIORITY] + [LABELS["face"]], np.uint8)
    return values[rank]


def face_labels(labels_of_vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Label value of every triangle, ``(F,)`` uint8, from ``(V,)`` vertex labels and ``(F, 3)`` faces."""
    corners = np.asarray(labels_of_vertices)[np.asarray(faces, np.int64)]
    order = {LABELS[name]: index for index, name in enumerate(PRIORITY)}
    rank_of_value = np.full(256, len(PRIORITY), np.int64)
    for value, index in order.items():
        rank_of_value[value] = index
    ranks = rank_of_value[corners]
    best = corners[np.arange(len(corners)), np.argmin(ranks, axis=1)]
    a, b, c = corners[:, 0], corners[:, 1], corners[:, 2]
    majority = np.where((a == b) | (a == c), a, np.where(b == c, b, best))
    return majority.astype(np.uint8)


def _spread_along_edges(rank: np.ndarray, faces: np.ndarray) -> np.ndarray:
    unset = len(PRIORITY)
    rank = rank.copy()
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    edges = np.concatenate([edges, edges[:, ::-1]])
    while True:
        missing = rank[edges[:, 1]] == unset
        giving = missing & (rank[edges[:, 0]] != unset)
        if not giving.any():
            return rank
        update = np.full_like(rank, unset)
        np.minimum.at(update, edges[giving, 1], rank[edges[giving, 0]])
        rank = np.where(rank == unset, update, rank)
