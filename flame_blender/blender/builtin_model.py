"""The built-in synthetic FLAME model, kept where a saved .blend can find it again.

A head stores its model file's path. core's :func:`~flame_blender.core.builtin_flame_dir` lives in
a cache folder named after a digest of the generator's source, cleaned after a day: a .blend saved
with it would lose its model after an update. Blender gives each extension a user folder
(``bpy.utils.extension_path_user``) that survives updates; the model is written there once, in a
folder named after :data:`~flame_blender.core.synthetic.SYNTHETIC_VERSION` only, so saved files
reopen after an update. The first use generates it (a few seconds, with progress shown).
Registered from a checkout (not installed as an extension) it goes to Blender's user
``datafiles/flame_blender`` folder instead.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import bpy

from ..core.synthetic import FILE_NAMES, SYNTHETIC_VERSION, write_synthetic_flame
from .registration import addon_package

FOLDER_NAME = f"synthetic-v{SYNTHETIC_VERSION}-seed0"


def user_folder() -> Path:
    """The extension's own writable folder (created)."""
    package = addon_package()
    if package.startswith("bl_ext.") and hasattr(bpy.utils, "extension_path_user"):
        return Path(bpy.utils.extension_path_user(package, create=True))
    return Path(bpy.utils.user_resource("DATAFILES", path="flame_blender", create=True))


def builtin_model_dir(window_manager=None) -> Path:
    """The synthetic FLAME folder in :func:`user_folder`, generated on first use.

    ``window_manager``: shows progress on the mouse cursor while generating (GUI).
    """
    root = user_folder()
    target = root / FOLDER_NAME
    if all((target / name).is_file() for name in FILE_NAMES):
        return target
    if window_manager is not None:
        window_manager.progress_begin(0, 1)
    temporary = Path(tempfile.mkdtemp(prefix=f".{FOLDER_NAME}.", dir=root))
    try:
        write_synthetic_flame(temporary, seed=0)
        if target.exists():  # half-written by an interrupted first use
            shutil.rmtree(target, ignore_errors=True)
        try:
            os.replace(temporary, target)
        except OSError:
            if not all((target / name).is_file() for name in FILE_NAMES):
                raise  # (else another Blender wrote it meanwhile)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
        if window_manager is not None:
            window_manager.progress_end()
    return target


def is_generated() -> bool:
    target = user_folder() / FOLDER_NAME
    return all((target / name).is_file() for name in FILE_NAMES)
