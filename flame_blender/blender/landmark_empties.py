"""Landmark empties that stay on a FLAME head's deforming surface.

Each landmark (MediaPipe 105 or iBUG 68) becomes a small sphere empty parented to the head
(parent type OBJECT, identity parent inverse), so its location is in the head's object space,
which is FLAME's coordinate system. :func:`follow` is called by :mod:`.head` whenever it writes
the pose shape key, with the posed vertices it wrote, and moves every empty of that head to its
barycentric point on them (core's :class:`~..core.landmarks.LandmarkSet` does the math). The
empties are therefore exact in every state the mesh is: slider edits, set_parameters, animation
(frame_change_pre/post), undo and file load.

The empties carry custom properties ``flame_landmark_set`` ("mediapipe" / "ibug68") and
``flame_landmark_index``; the index of which heads have empties is rebuilt from them (after
undo, file load, append, duplication), so nothing needs to be saved besides the objects.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import bpy
import numpy as np

from .. import core
from ..core.errors import FlameFileError, FlameParameterError
from ..core.io import landmark_io
from ..core.model.landmarks import LandmarkSet, landmark_set_output
from ..core.model.rotation import axis_angle_to_matrix
from . import runtime

SET_PROPERTY = "flame_landmark_set"
INDEX_PROPERTY = "flame_landmark_index"
HEAD_PROPERTY = "flame_landmark_head"  # on the collection: the head it holds landmarks for
#: Set id -> (label, description).
LANDMARK_SETS = {
    "mediapipe": ("MediaPipe 105", "The 105 MediaPipe face-mesh landmarks of FLAME's mediapipe embedding"),
    "ibug68": ("iBUG 68", "The 68 iBUG landmarks: the fixed 68-point embedding (flame_static_embedding_68.pkl, else DECA's)"),
}
EMPTY_SIZE = 0.002  # metres: the sphere's radius, about a landmark's precision


@dataclass
class _Evaluator:
    """One landmark set of one model, ready to evaluate on posed vertices."""

    landmarks: LandmarkSet
    output: str  # the LandmarkSet result to use ("mediapipe", "static_68", "dynamic_68", ...)
    count: int
    mediapipe_ids: np.ndarray | None = None

    @property
    def needs_pose(self) -> bool:
        return self.landmarks.contour is not None

    def points(self, vertices: np.ndarray, pose: np.ndarray | None) -> np.ndarray:
        """Landmarks ``(L, 3)`` on ``vertices (V, 3)``; ``pose (18,)`` picks the jaw contour."""
        neck = np.eye(3)
        if self.needs_pose and pose is not None:
            neck = axis_angle_to_matrix(np.asarray(pose[0:3], dtype=np.float64)) @ axis_angle_to_matrix(
                np.asarray(pose[3:6], dtype=np.float64)
            )
        result = self.landmarks.evaluate_numpy(np.asarray(vertices)[None], neck[None])
        return result[self.output][0]


_evaluators: dict[tuple[str, str], _Evaluator] = {}


def _evaluator(model_path: str, landmark_set: str) -> _Evaluator:
    """The set's embedding for the model, loaded from the model's folder once per session.

    Raises ``FlameFileError`` naming the missing file, ``FlameParameterError`` for an unknown set.
    """
    if landmark_set not in LANDMARK_SETS:
        raise FlameParameterError(f"unknown landmark set {landmark_set!r}; expected one of {sorted(LANDMARK_SETS)}")
    model_key = runtime.model_key(model_path)
    cache_key = (model_key, landmark_set)
    evaluator = _evaluators.get(cache_key)
    if evaluator is not None:
        return evaluator
    folder = Path(model_key).parent
    embeddings = core.load_landmark_embeddings(folder)
    faces = runtime.get_model(model_key)["f"]
    problems = getattr(embeddings, "problems", {})
    if landmark_set == "mediapipe":
        if "mediapipe" not in embeddings and landmark_io.MEDIAPIPE_FILE_NAME in problems:
            raise FlameFileError(None, problems[landmark_io.MEDIAPIPE_FILE_NAME])
        if "mediapipe" not in embeddings:
            raise FlameFileError(
                folder / landmark_io.MEDIAPIPE_FILE_NAME,
                "missing: the MediaPipe landmark embedding is needed beside the model for MediaPipe 105 empties",
            )
        chosen = {"mediapipe": embeddings["mediapipe"]}
        output = "mediapipe"
    else:
        # core's one definition of "iBUG 68", the same as the batch renderer's --landmarks ibug68
        output = landmark_set_output("ibug68", embeddings)
        if output is None and problems:  # what would have given iBUG 68 is unreadable: say why
            raise FlameFileError(None, "; ".join(problems.values()))
        if output is None:
            raise FlameFileError(
                folder / landmark_io.STATIC_FILE_NAMES[68],
                f"missing: iBUG 68 empties need it, or DECA's {landmark_io.DECA_FILE_NAME}, beside the model",
            )
        chosen = {output: embeddings[output]}
    try:
        landmarks = LandmarkSet.from_embeddings(chosen, faces)
    except ValueError as error:
        raise FlameFileError(folder, f"landmark embedding does not fit the model: {error}") from None
    mediapipe_ids = chosen["mediapipe"].mediapipe_ids if "mediapipe" in chosen else None
    count = 68 if output == "dynamic_68" else len(next(iter(chosen.values())))
    evaluator = _Evaluator(landmarks, output, count, mediapipe_ids)
    _evaluators[cache_key] = evaluator
    return evaluator


# ---------------------------------------------------------------------------------------------
# which heads have empties


@dataclass
class _Followers:
    """The empties of one head: set -> (empties in landmark order, their landmark indices)."""

    sets: dict[str, tuple[list[bpy.types.Object], list[int]]]


_index: dict[int, _Followers] | None = None  # head session_uid -> its empties; None: rebuild
_index_object_count = -1


def forget() -> None:
    """Rebuild the index of empties on next use (undo, file load, objects added or removed)."""
    global _index
    _index = None


def _is_landmark_empty(obj) -> bool:
    return obj.type == "EMPTY" and SET_PROPERTY in obj


def _build_index() -> dict[int, _Followers]:
    global _index, _index_object_count
    found: dict[int, dict[str, list[tuple[int, bpy.types.Object]]]] = {}
    objects = bpy.data.objects
    for obj in objects:
        if not _is_landmark_empty(obj):
            continue
        parent = obj.parent
        if parent is None or parent.type != "MESH":
            continue
        sets = found.setdefault(parent.session_uid, {})
        sets.setdefault(str(obj[SET_PROPERTY]), []).append((int(obj.get(INDEX_PROPERTY, 0)), obj))
    _index = {}
    for uid, sets in found.items():
        ordered = {name: sorted(items, key=lambda item: item[0]) for name, items in sets.items()}
        _index[uid] = _Followers(
            {name: ([obj for _, obj in items], [i for i, _ in items]) for name, items in ordered.items()}
        )
    _index_object_count = len(objects)
    return _index


def _followers(obj) -> _Followers | None:
    index = _index
    # Appending or duplicating objects runs no handler we could hook: a changed object count
    # is the cheap sign that the index may be stale.
    if index is None or len(bpy.data.objects) != _index_object_count:
        index = _build_index()
    return index.get(obj.session_uid)


def following(obj: bpy.types.Object) -> bool:
    """Whether the head has landmark empties that follow its surface (a dict lookup)."""
    return _followers(obj) is not None


def landmark_empties(obj: bpy.types.Object, landmark_set: str | None = None) -> list[bpy.types.Object]:
    """The head's landmark empties (of one set, or all), in landmark order."""
    followers = _followers(obj)
    if followers is None:
        return []
    names = [landmark_set] if landmark_set is not None else list(followers.sets)
    return [empty for name in names for empty in followers.sets.get(name, ([], []))[0]]


# ---------------------------------------------------------------------------------------------
# following the surface


def follow(obj: bpy.types.Object, vertices: np.ndarray, pose: np.ndarray | None = None) -> None:
    """Move the head's landmark empties onto the posed ``vertices (5023, 3)`` (object space,
    what the pose key makes the mesh). ``pose (18,)``: global, neck, jaw, eye pose and transl,
    used by the yaw-dependent jaw contour. A dict lookup when the head has no empties; never
    raises for deleted empties or a missing embedding (the empties then keep their place)."""
    for _ in range(2):  # once more after an empty was deleted
        followers = _followers(obj)
        if followers is None:
            return
        try:
            path = obj.flame.model_path
            for landmark_set, (empties, indices) in followers.sets.items():
                if not _place(obj, empties, indices, _evaluator(path, landmark_set).points(vertices, pose)):
                    forget()  # an empty was re-parented: it no longer follows this head
            return
        except ReferenceError:  # an empty was deleted: find the others again
            forget()
        except (FlameFileError, FlameParameterError, OSError, ValueError) as error:
            runtime.report_once(f"{obj.name}: cannot place the landmark empties ({error})")
            return


def _place(obj, empties: list[bpy.types.Object], indices: list[int], points: np.ndarray) -> bool:
    """Set the empties' locations; False when one of them is no longer the head's child."""
    rows = points.tolist()
    count = len(rows)
    all_children = True
    for empty, index in zip(empties, indices, strict=True):
        if empty.parent != obj:
            all_children = False
        elif 0 <= index < count:
            empty.location = rows[index]
    return all_children


# ---------------------------------------------------------------------------------------------
# adding and removing


def _landmark_collection(obj: bpy.types.Object, create: bool) -> bpy.types.Collection | None:
    for collection in bpy.data.collections:
        if collection.get(HEAD_PROPERTY) == obj:
            return collection
    if not create:
        return None
    parents = obj.users_collection
    parent = parents[0] if parents else None
    collection = bpy.data.collections.new(f"{obj.name} landmarks")
    collection[HEAD_PROPERTY] = obj
    if parent is not None:
        parent.children.link(collection)
    return collection


def add_landmark_empties(obj: bpy.types.Object, landmark_set: str) -> list[bpy.types.Object]:
    """Create one empty per landmark of ``landmark_set`` ("mediapipe": 105, "ibug68": 68) on the
    head, in a child collection ``"<head> landmarks"``, each named ``"<head> <set> 012"`` and
    placed on the current surface. Existing empties of that set are replaced.

    Raises ``FlameParameterError`` (not a head, unknown set) or ``FlameFileError`` (embedding
    missing or broken) with nothing created.
    """
    from . import head

    if not head.is_head(obj):
        raise FlameParameterError(f"{getattr(obj, 'name', obj)!r} is not a FLAME head")
    evaluator = _evaluator(obj.flame.model_path, landmark_set)  # fails before creating anything
    remove_landmark_empties(obj, landmark_set)
    collection = _landmark_collection(obj, create=True)
    created: list[bpy.types.Object] = []
    try:
        for index in range(evaluator.count):
            empty = bpy.data.objects.new(f"{obj.name} {landmark_set} {index:03d}", None)
            created.append(empty)
            empty.empty_display_type = "SPHERE"
            empty.empty_display_size = EMPTY_SIZE
            empty[SET_PROPERTY] = landmark_set
            empty[INDEX_PROPERTY] = index
            if evaluator.mediapipe_ids is not None:
                empty["flame_mediapipe_id"] = int(evaluator.mediapipe_ids[index])
            empty.parent = obj  # parent type OBJECT, identity inverse: location = FLAME coordinates
            collection.objects.link(empty)
    except BaseException:
        bpy.data.batch_remove(created)
        _drop_collection_if_empty(collection)
        raise
    forget()
    head.update_head(obj)  # places them on the current surface, through follow()
    return created


def remove_landmark_empties(obj: bpy.types.Object, landmark_set: str | None = None) -> int:
    """Delete the head's landmark empties (one set, or all) and their collection once empty.
    Returns how many were deleted."""
    empties = landmark_empties(obj, landmark_set)
    count = len(empties)
    if empties:
        bpy.data.batch_remove(empties)
    forget()
    collection = _landmark_collection(obj, create=False)
    if collection is not None:
        _drop_collection_if_empty(collection)
    return count


def _drop_collection_if_empty(collection: bpy.types.Collection) -> None:
    if not collection.objects and not collection.children:
        bpy.data.collections.remove(collection)


def clear() -> None:
    """Drop the cached embeddings and the index (unregister, reload)."""
    _evaluators.clear()
    forget()
