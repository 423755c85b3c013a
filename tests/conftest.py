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
