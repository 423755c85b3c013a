"""Shared fixtures. Tests run against the real Blender (the bpy module), never a mock."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import pytest

# Blender reads BLENDER_USER_RESOURCES once, at `import bpy`. Point it at a throw-away folder
# before any test imports bpy, so installing the extension never touches a real user's Blender.
os.environ.setdefault("BLENDER_USER_RESOURCES", tempfile.mkdtemp(prefix="flame-blender-user-"))

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def flame_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A complete synthetic FLAME folder (every file format), written once per test session."""
    from flame_blender.core.synthetic import write_synthetic_flame

    out = tmp_path_factory.mktemp("flame")
    write_synthetic_flame(out, seed=0)
    return out


# --- Blender fixtures (BLENDER helper). Names are stable: other test files use them. ---------

ADDON_MODULE = "flame_blender"


def _ensure_addon_enabled():
    """Enable the repository's ``flame_blender`` as an add-on (preferences included)."""
    import sys

    import bpy

    # Blender's bundled modules (addon_utils) are importable only once bpy is.
    addon_utils = __import__("addon_utils")

    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    if ADDON_MODULE not in bpy.context.preferences.addons or not hasattr(bpy.types.Object, "flame"):
        addon_utils.enable(ADDON_MODULE, default_set=True, handle_error=_raise)
    return bpy


def _raise(error: BaseException) -> None:
    raise error


@pytest.fixture(scope="session")
def blender_addon():
    """The bpy module with the repository's flame_blender enabled as an add-on."""
    return _ensure_addon_enabled()


@pytest.fixture
def blender_scene(blender_addon):
    """A fresh, empty file (``read_homefile(use_empty=True)``) with flame_blender registered;
    returns its scene."""
    bpy = blender_addon
    bpy.ops.wm.read_homefile(use_empty=True)
    _ensure_addon_enabled()
    return bpy.context.scene


@pytest.fixture
def small_head(blender_scene, flame_dir):
    """A head with 10 identity and 5 expression components of the synthetic model, in
    ``blender_scene``."""
    from flame_blender.blender import import_head

    return import_head(blender_scene, flame_dir, n_shape=10, n_expression=5, name="FLAME")


def read_evaluated_vertices(obj, depsgraph=None):
    """The depsgraph-evaluated vertex positions of ``obj`` in object space, float64 ``(V, 3)``."""
    import bpy
    import numpy as np

    depsgraph = depsgraph or bpy.context.evaluated_depsgraph_get()
    evaluated = obj.evaluated_get(depsgraph)
    mesh = evaluated.to_mesh()
    try:
        out = np.empty(len(mesh.vertices) * 3, dtype=np.float32)
        mesh.vertices.foreach_get("co", out)
    finally:
        evaluated.to_mesh_clear()
    return out.reshape(-1, 3).astype(np.float64)


def evaluated_parameters(obj, depsgraph=None):
    """The head's parameters as the depsgraph evaluated them (animated values included), read
    from Blender's evaluated shape keys and ``flame`` properties, not from the extension's caches."""
    import bpy

    from flame_blender.core import FlameParameters

    depsgraph = depsgraph or bpy.context.evaluated_depsgraph_get()
    flame = obj.evaluated_get(depsgraph).flame
    blocks = obj.data.shape_keys.evaluated_get(depsgraph).key_blocks
    return FlameParameters(
        shape=[blocks[f"shape_{i:03d}"].value for i in range(flame.n_shape)],
        expression=[blocks[f"expr_{i:03d}"].value for i in range(flame.n_expression)],
        global_pose=flame.global_pose[:], neck_pose=flame.neck_pose[:], jaw_pose=flame.jaw_pose[:],
        eye_pose=flame.eye_pose[:], transl=flame.transl[:],
    )


@pytest.fixture
def evaluated_vertices():
    """``evaluated_vertices(obj, depsgraph=None) -> (V, 3)``: see :func:`read_evaluated_vertices`."""
    return read_evaluated_vertices


@pytest.fixture(scope="session")
def flame_reference(flame_dir):
    """``flame_reference(params) -> (5023, 3)``: the float64 NumPy FLAME forward pass of the
    synthetic model for a ``FlameParameters`` (its counts pick the components)."""
    import numpy as np

    from flame_blender.core import FlameNumpy

    models: dict = {}

    def forward(params):
        counts = (params.n_shape, params.n_expression)
        if counts not in models:
            models[counts] = FlameNumpy(flame_dir, n_shape=counts[0], n_expression=counts[1])
        return np.asarray(models[counts].forward(**params.forward_kwargs()), dtype=np.float64)

    return forward


# --- Blender versions (issue 13): `pytest --blender-only` runs the Blender-facing tests only. ---
# `make test` runs the whole suite on the default environment (bpy 5.0) and the Blender-facing
# tests again on bpy 4.5 and 4.2. A test module is Blender-facing when it imports bpy, uses the
# Blender fixtures below, or says it runs a script under "the bpy module": new test modules are
# picked up without a list.
BLENDER_FACING = re.compile(
    r"\bimport bpy\b|importorskip\([\"']bpy[\"']\)|\bbpy module\b|\bblender_(addon|scene)\b|\bsmall_head\b"
)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--blender-only", action="store_true", default=False,
        help="run only the test modules that use Blender (the bpy module)",
    )


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """With --blender-only, test modules that never mention bpy are not even imported (the bpy
    4.x environments have no torch, which several core test modules import)."""
    if not config.getoption("--blender-only") or collection_path.suffix != ".py":
        return None
    if not collection_path.name.startswith("test_"):
        return None
    return BLENDER_FACING.search(collection_path.read_text(encoding="utf-8")) is None


# --- Leaving the bpy 4.2 module. After a passing session, the 4.2 module's own teardown at
# interpreter exit can crash (SIGSEGV) once the suite has registered and unregistered the
# extension many times; 4.5 and 5.0 exit cleanly. The session's result is known by then, so on
# 4.2 the process ends with it directly instead of running that teardown. Scripts users write are
# covered separately: tests/test_blender_usability.py runs the README example in its own process.
_SESSION_STATUS: list[int] = []


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _SESSION_STATUS.append(int(exitstatus))


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    import sys

    bpy = sys.modules.get("bpy")
    if bpy is None or not _SESSION_STATUS or tuple(bpy.app.version[:2]) >= (4, 5):
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(_SESSION_STATUS[-1])
