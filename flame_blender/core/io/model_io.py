"""Read FLAME model pickles and the vertex masks, without chumpy or scipy.

``load_flame`` reads FLAME 2020 ``generic_model.pkl``, ``flame2023.pkl``,
``flame2023_no_jaw.pkl`` (Python 2 pickles with ``chumpy.ch.Ch`` and scipy ``csc_matrix``) and
FLAME 2023 Open (a Python 3 pickle of plain arrays) through the restricted unpickler of
:mod:`.safe_pickle`, and checks every array before handing it on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import FlameFileError
from .plain_arrays import fits_int64
from .reader_guard import file_reader
from .safe_pickle import ChumpyArray, SparseCscMatrix, load_pickle, to_array

# load_flame's choice in a folder, first match wins (then any other *.pkl holding a model).
MODEL_FILE_NAMES = ("flame2023.pkl", "generic_model.pkl", "flame2023_no_jaw.pkl")
MASKS_FILE_NAME = "FLAME_masks.pkl"
# Pickles in a FLAME folder that are known not to be models: skipped when scanning for one.
_NOT_MODEL_FILES = {
    MASKS_FILE_NAME,
    "flame_static_embedding.pkl",
    "flame_static_embedding_68.pkl",
}
MODEL_KEYS = ("v_template", "f", "shapedirs", "posedirs", "weights", "J_regressor")
N_JOINTS = 5
# Parents of root, neck, jaw, left eye, right eye; 2**32-1 is "no parent", as in the files.
DEFAULT_KINTREE_TABLE = np.array([[4294967295, 0, 1, 1, 1], [0, 1, 2, 3, 4]], dtype=np.int64)


def _model_problem(value: Any) -> str | None:
    """Why ``value`` (an unpickled object) is not a FLAME model dict, or None if it is one."""
    if not isinstance(value, dict):
        return f"holds a {type(value).__name__}, expected a dict of FLAME arrays"
    missing = [key for key in MODEL_KEYS if key not in value]
    if missing:
        return (
            f"has no key {', '.join(repr(k) for k in missing)}; a FLAME model has "
            f"{', '.join(MODEL_KEYS)}"
        )
    return None


def _scan_folder(folder: Path) -> tuple[Path, Any | None]:
    """The model file in ``folder`` and, when it had to be opened to be recognised, its
    contents (so ``load_flame`` does not read it twice)."""
    for name in MODEL_FILE_NAMES:
        candidate = folder / name
        if candidate.is_file():
            return candidate, None
    tried = []
    for candidate in sorted(folder.glob("*.pkl")):
        if candidate.name in _NOT_MODEL_FILES or not candidate.is_file():
            continue
        try:
            value = load_pickle(candidate)
        except FlameFileError as error:
            tried.append(f"{candidate.name} ({error.problem})")
            continue
        problem = _model_problem(value)
        if problem is None:
            return candidate, value
        tried.append(f"{candidate.name} ({problem})")
    detail = f"; other pickles there are not models: {'; '.join(tried)}" if tried else ""
    raise FlameFileError(
        folder,
        f"holds no FLAME model; expected one of {', '.join(MODEL_FILE_NAMES)} or a FLAME 2023 "
        f"Open .pkl{detail}",
    )


def find_flame_model_file(path: str | Path) -> Path:
    """The FLAME model pickle ``path`` names: the file itself, or for a folder the first of
    ``flame2023.pkl``, ``generic_model.pkl``, ``flame2023_no_jaw.pkl``, then any other ``*.pkl``
    holding a FLAME model dict (e.g. FLAME 2023 Open).

    Raises:
        FlameFileError: ``path`` does not exist, or the folder holds no model.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        return _scan_folder(path)[0]
    if path.is_file():
        return path
    raise FlameFileError(
        path,
        "no such file or folder; expected a FLAME model file (.pkl) or a folder holding "
        f"{', '.join(MODEL_FILE_NAMES)}",
    )


def _numeric(path: Path, key: str, value: Any, kind: str) -> np.ndarray:
    """``value`` (ndarray, Ch or sparse) as an ndarray whose dtype kind is in ``kind``."""
    try:
        array = to_array(value)
    except ValueError as error:
        raise FlameFileError(
            path, f"key '{key}' is a broken {type(value).__name__}: {error}"
        ) from error
    if isinstance(array, (list, tuple)):  # e.g. a Ch whose x was kept as a list
        array = np.asarray(array)
    if isinstance(value, ChumpyArray) and array is None:
        raise FlameFileError(
            path, f"key '{key}' is a chumpy.ch.Ch without a stored value; expected an array"
        )
    if not isinstance(array, np.ndarray):
        raise FlameFileError(
            path, f"key '{key}' is a {type(array).__name__}, expected a numpy array"
        )
    if array.dtype.kind not in kind:
        expected = "integers" if kind == "iu" else "numbers"
        raise FlameFileError(
            path, f"key '{key}' has dtype {array.dtype}, expected an array of {expected}"
        )
    return array


def _check_shape(path: Path, key: str, array: np.ndarray, expected: tuple, text: str) -> None:
    ok = array.ndim == len(expected) and all(
        e is None or n == e for n, e in zip(array.shape, expected, strict=True)
    )
    if not ok:
        raise FlameFileError(path, f"key '{key}' has shape {array.shape}, expected {text}")


def all_finite(array: np.ndarray, chunk: int = 1 << 22) -> bool:
    """True when every element is finite; works in chunks so a (512,512,3,200) array needs no
    same-sized temporary."""
    if array.dtype.kind not in "fc":
        return True
    flat = array.reshape(-1) if array.flags.c_contiguous else array.ravel(order="K")
    # Fast path: a sum is finite only if every term is (IEEE: inf and NaN never turn finite
    # again), and it makes no temporary. A finite array may still overflow the sum; then the
    # exact element-wise check below decides.
    if array.dtype.kind == "f" and np.isfinite(np.add.reduce(flat, dtype=array.dtype)):
        return True
    return all(np.isfinite(flat[i : i + chunk]).all() for i in range(0, flat.size, chunk))


def _check_finite(path: Path, key: str, array: np.ndarray) -> None:
    if not all_finite(array):
        bad = int(np.count_nonzero(~np.isfinite(array)))
        raise FlameFileError(
            path, f"key '{key}' holds {bad} NaN/inf value(s); expected finite numbers"
        )


def _float64(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(array, dtype=np.float64)


def _text(path: Path, key: str, value: Any, default: str) -> str:
    if value is None:
        return default
    if isinstance(value, bytes):
        return value.decode("latin1")
    if isinstance(value, np.ndarray) and value.shape == ():
        value = value.item()
    if isinstance(value, str):
        return value
    raise FlameFileError(path, f"key '{key}' is a {type(value).__name__}, expected a string")


def validate_flame_model(model: Any, path: str | Path) -> dict:
    """Check an unpickled FLAME dict and return plain numpy arrays (see :func:`load_flame`)."""
    path = Path(path)
    problem = _model_problem(model)
    if problem is not None:
        raise FlameFileError(path, problem)

    v_template = _numeric(path, "v_template", model["v_template"], "fiu")
    if v_template.ndim != 2 or v_template.shape[1] != 3 or v_template.shape[0] < 1:
        raise FlameFileError(
            path, f"key 'v_template' has shape {v_template.shape}, expected (V, 3), V=5023"
        )
    n_vertices = v_template.shape[0]
    v = n_vertices

    faces = _numeric(path, "f", model["f"], "iu")
    _check_shape(path, "f", faces, (None, 3), "(F, 3) triangles, F=9976")
    if faces.size and (faces.min() < 0 or not fits_int64(faces) or faces.max() >= n_vertices):
        raise FlameFileError(
            path,
            f"key 'f' has vertex indices {int(faces.min())}..{int(faces.max())}, out of range; "
            f"expected 0..{n_vertices - 1}",
        )

    shapedirs = _numeric(path, "shapedirs", model["shapedirs"], "fiu")
    _check_shape(path, "shapedirs", shapedirs, (v, 3, None), f"({v}, 3, N), N=400")
    posedirs = _numeric(path, "posedirs", model["posedirs"], "fiu")
    n_pose = 9 * (N_JOINTS - 1)
    _check_shape(path, "posedirs", posedirs, (v, 3, n_pose), f"({v}, 3, {n_pose})")
    weights = _numeric(path, "weights", model["weights"], "fiu")
    _check_shape(path, "weights", weights, (v, N_JOINTS), f"({v}, {N_JOINTS})")

    regressor_value = model["J_regressor"]
    if isinstance(regressor_value, SparseCscMatrix) and regressor_value.shape != (N_JOINTS, v):
        raise FlameFileError(
            path,
            f"key 'J_regressor' is a sparse matrix of shape {regressor_value.shape}, "
            f"expected ({N_JOINTS}, {v})",
        )
    j_regressor = _numeric(path, "J_regressor", regressor_value, "fiu")
    _check_shape(path, "J_regressor", j_regressor, (N_JOINTS, v), f"({N_JOINTS}, {v})")

    arrays = {
        "v_template": v_template,
        "shapedirs": shapedirs,
        "posedirs": posedirs,
        "weights": weights,
        "J_regressor": j_regressor,
    }
    for key, array in arrays.items():
        _check_finite(path, key, array)
    result: dict[str, Any] = {key: _float64(array) for key, array in arrays.items()}
    result["f"] = np.ascontiguousarray(faces)

    if model.get("J") is not None:
        joints = _numeric(path, "J", model["J"], "fiu")
        _check_shape(path, "J", joints, (N_JOINTS, 3), f"({N_JOINTS}, 3)")
        _check_finite(path, "J", joints)
        result["J"] = _float64(joints)
    else:  # FLAME 2023 Open may leave it out: the template's joints
        result["J"] = result["J_regressor"] @ result["v_template"]

    if model.get("kintree_table") is not None:
        kintree = _numeric(path, "kintree_table", model["kintree_table"], "iu")
        _check_shape(path, "kintree_table", kintree, (2, N_JOINTS), f"(2, {N_JOINTS})")
        if not fits_int64(kintree):
            raise FlameFileError(path, "key 'kintree_table' holds values beyond 2**63-1; "
                                 "expected joint indices and 2**32-1 for none")  # fmt: skip
        result["kintree_table"] = np.ascontiguousarray(kintree, dtype=np.int64)
    else:
        result["kintree_table"] = DEFAULT_KINTREE_TABLE.copy()

    result["bs_style"] = _text(path, "bs_style", model.get("bs_style"), "lbs")
    result["bs_type"] = _text(path, "bs_type", model.get("bs_type"), "lrotmin")
    return result


@file_reader
def load_flame(path: str | Path) -> dict:
    """Load a FLAME model: a model pickle, or a folder holding one (see
    :func:`find_flame_model_file` for the order).

    Returns a dict of plain numpy arrays and strings (chumpy and scipy objects turned into
    arrays; neither library is needed)::

        v_template   float64 (5023, 3)        mean head, metres, y up
        f            file dtype (uint32) (9976, 3)  triangles, 0-based
        shapedirs    float64 (5023, 3, N)     N=400: [:300] shape, [300:] expression
        posedirs     float64 (5023, 3, 36)
        weights      float64 (5023, 5)
        J_regressor  float64 (5, 5023)        dense
        J            float64 (5, 3)
        kintree_table int64 (2, 5)
        bs_style, bs_type  str

    Raises:
        FlameFileError: missing file or folder, no model in the folder, not a pickle, truncated
            file, missing key, wrong shape or dtype, face index out of range, NaN/inf.
        UnsafePickleError: the pickle names a global FLAME files never use; nothing ran.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        model_file, model = _scan_folder(path)
    else:
        model_file, model = find_flame_model_file(path), None
    if model is None:
        model = load_pickle(model_file)
    return validate_flame_model(model, model_file)


@file_reader
def load_flame_masks(path: str | Path) -> dict[str, np.ndarray]:
    """Vertex masks from ``FLAME_masks.pkl`` (or a folder holding it): region name -> int64
    ``(n,)`` vertex indices, in the file's order (``lips`` keeps its order and duplicates).

    Raises:
        FlameFileError: missing file, not a pickle, not a dict of 1-D integer arrays, negative
            indices.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        path = path / MASKS_FILE_NAME
    if not path.is_file():
        raise FlameFileError(path, f"no such file; expected {MASKS_FILE_NAME} (FLAME vertex masks)")
    value = load_pickle(path)
    if not isinstance(value, dict):
        raise FlameFileError(
            path, f"holds a {type(value).__name__}, expected a dict of vertex index arrays"
        )
    masks: dict[str, np.ndarray] = {}
    for name, indices in value.items():
        key = name.decode("latin1") if isinstance(name, bytes) else name
        if not isinstance(key, str):
            raise FlameFileError(path, f"mask name {name!r} is not a string")
        array = _numeric(path, key, indices, "iu")
        if array.ndim != 1:
            raise FlameFileError(
                path, f"key '{key}' has shape {array.shape}, expected 1-D vertex indices"
            )
        if array.size and (array.min() < 0 or not fits_int64(array)):
            raise FlameFileError(
                path, f"key '{key}' has negative vertex indices or ones beyond 2**63-1"
            )
        masks[key] = np.ascontiguousarray(array, dtype=np.int64)
    return masks
