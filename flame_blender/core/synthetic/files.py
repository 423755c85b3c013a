"""Write a complete synthetic FLAME folder, every file in the real file's format."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

from . import pickle_writer as pw
from .model import head_mesh, synthetic_flame_model
from .regions import flame_masks, landmark_embeddings
from .textures import albedo_mm, bfm_albedo, flame_texture

FILE_NAMES = (
    "generic_model.pkl",
    "flame2023.pkl",
    "flame2023_no_jaw.pkl",
    "FLAME_masks.pkl",
    "mediapipe_landmark_embedding.npz",
    "flame_static_embedding.pkl",
    "flame_static_embedding_68.pkl",
    "flame_dynamic_embedding.npy",
    "landmark_embedding.npy",
    "FLAME_texture.npz",
    "albedoModel2020_FLAME_albedoPart.npz",
    "FLAME_albedo_from_BFM.npz",
    "head_template_mesh.obj",
)

# The generator's version; the cached built-in folder's name also carries a digest of this
# package's source, so any change to the generator gives a fresh folder.
SYNTHETIC_VERSION = 2

# Python 2's dict order for the model's keys (the real pickles list them in this order).
MODEL_KEY_ORDER = ("f", "J_regressor", "kintree_table", "J", "bs_style", "weights", "posedirs",
                   "v_template", "shapedirs", "bs_type")


def model_pickle_bytes(model: dict) -> bytes:
    """A model pickle as Python 2 wrote FLAME's: protocol 2, chumpy shapedirs, csc regressor."""
    values = {}
    for key in MODEL_KEY_ORDER:
        value = model[key]
        if key == "shapedirs":
            value = pw.chumpy_ch(value)
        elif key == "J_regressor":
            value = pw.scipy_csc_matrix(value)
        elif isinstance(value, str):
            value = pw.Py2Str(value.encode())
        values[key] = value
    return pw.py2_pickle(pw.py2_key_dict(values), protocol=2)


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """What ``np.savez`` writes (stored zip64 members ``<key>.npy``), with a fixed timestamp so
    the file is byte-identical run to run, streamed (no copy of a 600 MB texture basis)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        for key, array in arrays.items():
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_STORED
            info.external_attr = 0o600 << 16
            with archive.open(info, "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(array), allow_pickle=False)


def template_obj_text(vertices: np.ndarray, uvs: np.ndarray, faces: np.ndarray,
                      uv_faces: np.ndarray) -> str:
    """head_template_mesh.obj: ``v``, ``vt``, then ``f a/b a/b a/b`` (1-based)."""
    lines = [f"v {x:.8f} {y:.8f} {z:.8f}" for x, y, z in vertices]
    lines += [f"vt {u:.8f} {v:.8f}" for u, v in uvs]
    lines += [
        f"f {a + 1}/{ta + 1} {b + 1}/{tb + 1} {c + 1}/{tc + 1}"
        for (a, b, c), (ta, tb, tc) in zip(faces.tolist(), uv_faces.tolist(), strict=True)
    ]
    return "\n".join(lines) + "\n"


def _storage_key(index: int) -> str:
    """A storage key shaped like torch's (a memory address), fixed for reproducible files."""
    return str(94_000_000_000_000 + 4096 * index)


def write_synthetic_flame(out_dir: str | Path, seed: int = 0,
                          texture_resolution: int = 64) -> Path:
    """Write every file of a FLAME folder into ``out_dir`` (created if missing); returns it.

    Deterministic: the same ``seed`` and ``texture_resolution`` give byte-identical files.
    """
    if texture_resolution < 8:
        raise ValueError(f"texture_resolution must be at least 8, got {texture_resolution}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    mesh = head_mesh()
    model = synthetic_flame_model(seed)

    (out / "generic_model.pkl").write_bytes(model_pickle_bytes(model))
    (out / "flame2023.pkl").write_bytes(model_pickle_bytes(model))
    no_jaw = dict(model)
    # FLAME 2023 without jaw: the same head, but nothing in the face follows the jaw joint.
    weights = no_jaw["weights"].copy()
    weights[:, 1] += weights[:, 2]
    weights[:, 2] = 0.0
    no_jaw["weights"] = weights
    (out / "flame2023_no_jaw.pkl").write_bytes(model_pickle_bytes(no_jaw))

    masks = flame_masks(mesh)
    (out / "FLAME_masks.pkl").write_bytes(pw.py2_pickle(pw.py2_key_dict(masks), protocol=0))

    lmk = landmark_embeddings(mesh)
    for name, key in (("flame_static_embedding.pkl", "static_51"),
                      ("flame_static_embedding_68.pkl", "static_68")):
        faces, bary = lmk[key]
        payload = pw.py2_key_dict({"lmk_face_idx": faces.astype(np.uint32),
                                   "lmk_b_coords": bary.astype(np.float64)})
        (out / name).write_bytes(pw.py2_pickle(payload, protocol=0))

    faces, bary = lmk["mediapipe"]
    _save_npz(out / "mediapipe_landmark_embedding.npz", {
        "lmk_face_idx": faces.astype(np.uint32),
        "lmk_b_coords": np.asfortranarray(bary.astype(np.float64)),
        "landmark_indices": lmk["mediapipe_ids"][0].astype(np.int64),
    })

    dyn_faces, dyn_bary = lmk["dynamic_contour"]
    dynamic = pw.py2_key_dict({
        "lmk_face_idx": [row.astype(np.uint32) for row in dyn_faces],
        "lmk_b_coords": [row.astype(np.float64) for row in dyn_bary],
    })
    (out / "flame_dynamic_embedding.npy").write_bytes(pw.npy_of_object(dynamic, protocol=2))

    static_faces, static_bary = lmk["static_51"]
    full_faces, full_bary = lmk["static_68"]
    deca = {
        "static_lmk_faces_idx": pw.legacy_torch_tensor(static_faces.astype(np.int64), _storage_key(0)),
        "static_lmk_bary_coords": pw.legacy_torch_tensor(static_bary.astype(np.float32), _storage_key(1)),
        "dynamic_lmk_faces_idx": pw.legacy_torch_tensor(dyn_faces.astype(np.int64), _storage_key(2)),
        "dynamic_lmk_bary_coords": pw.legacy_torch_tensor(dyn_bary.astype(np.float32), _storage_key(3)),
        "full_lmk_faces_idx": full_faces.astype(np.int64)[None],
        "full_lmk_bary_coords": full_bary.astype(np.float32)[None],
    }
    (out / "landmark_embedding.npy").write_bytes(pw.npy_of_object(deca, protocol=3))

    rng = np.random.default_rng([seed, 5118])
    uv = {"vt": mesh.uvs.astype(np.float64), "ft": mesh.uv_faces.astype(np.int64)}
    _save_npz(out / "FLAME_texture.npz", {**flame_texture(texture_resolution, rng), **uv})
    _save_npz(out / "albedoModel2020_FLAME_albedoPart.npz",
              {**albedo_mm(texture_resolution, rng), **uv})
    _save_npz(out / "FLAME_albedo_from_BFM.npz", bfm_albedo(texture_resolution, rng))

    (out / "head_template_mesh.obj").write_text(
        template_obj_text(model["v_template"], mesh.uvs, mesh.faces, mesh.uv_faces),
        encoding="ascii", newline="\n",
    )
    return out


def _remove_old_versions(root: Path, keep: Path, age_seconds: float = 86400.0) -> None:
    now = time.time()
    for folder in root.glob("synthetic-*-seed*"):
        with contextlib.suppress(OSError):
            if folder != keep and folder.is_dir() and now - folder.stat().st_mtime > age_seconds:
                shutil.rmtree(folder, ignore_errors=True)


def _cache_root() -> Path:
    env = os.environ.get("FLAME_BLENDER_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "flame_blender"


def generator_version() -> str:
    """``SYNTHETIC_VERSION`` plus a digest of the generator's source files."""
    digest = hashlib.sha256()
    for source in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(source.name.encode() + b"\0" + source.read_bytes())
    return f"{SYNTHETIC_VERSION}+{digest.hexdigest()[:10]}"


def builtin_flame_dir() -> Path:
    """A complete synthetic FLAME folder (seed 0), generated once and cached.

    Lives under ``$FLAME_BLENDER_CACHE`` or ``~/.cache/flame_blender``, as
    ``synthetic-<version>-seed0`` (see :func:`generator_version`). It is written into a
    temporary folder beside its final place and renamed, so it is never seen half-written; a
    folder with files missing is written again. Folders of other generator versions that
    nobody touched for a day are removed.
    """
    root = _cache_root()
    target = root / f"synthetic-{generator_version()}-seed0"
    if all((target / name).is_file() for name in FILE_NAMES):
        return target
    root.mkdir(parents=True, exist_ok=True)
    _remove_old_versions(root, keep=target)
    temporary = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=root))
    try:
        write_synthetic_flame(temporary, seed=0)
        if target.exists():
            stale = Path(tempfile.mkdtemp(prefix=f".{target.name}.stale.", dir=root))
            # another process may have replaced it meanwhile
            with contextlib.suppress(OSError):
                os.replace(target, stale / "old")
            shutil.rmtree(stale, ignore_errors=True)
        try:
            os.replace(temporary, target)
        except OSError:
            # another process renamed its complete copy into place first
            if not all((target / name).is_file() for name in FILE_NAMES):
                raise
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    return target
