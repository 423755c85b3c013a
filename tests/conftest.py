"""Shared fixtures. Tests run against the real Blender (the bpy module), never a mock."""

from __future__ import annotations

import os
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

    import addon_utils
    import bpy

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
