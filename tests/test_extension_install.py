"""Build the extension zip, install it the way Blender does, and use the INSTALLED copy."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent.parent / "scripts"))
import build_extension  # noqa: E402

REPO_MODULE = "flame_blender"
REPO_NAME = "flame_test_repo"


def test_build_install_and_use_the_installed_copy(tmp_path, flame_dir, blender_addon, flame_reference):
    import addon_utils

    zip_path = build_extension.build(tmp_path / "dist")
    assert zip_path.name == "flame_blender-0.1.0.zip"
    import zipfile

    names = zipfile.ZipFile(zip_path).namelist()
    assert "blender_manifest.toml" in names and "__init__.py" in names
    assert "blender/head.py" in names and "core/model/parameters.py" in names
    assert not [name for name in names if "__pycache__" in name or name.startswith("tests/")]

    # The repository copy and the installed copy register the same classes: one at a time.
    addon_utils.disable(REPO_MODULE, default_set=True)
    repos = bpy.context.preferences.extensions.repos
    repo = repos.new(name=REPO_NAME, module=REPO_NAME, custom_directory=str(tmp_path / "repo"), source="USER")
    installed_module = f"bl_ext.{REPO_NAME}.flame_blender"
    try:
        result = bpy.ops.extensions.package_install_files(
            filepath=str(zip_path), repo=REPO_NAME, enable_on_install=True
        )
        assert result == {"FINISHED"}
        assert installed_module in bpy.context.preferences.addons
        installed = importlib.import_module(installed_module)
        assert str(tmp_path / "repo") in installed.__file__
        layer = importlib.import_module(f"{installed_module}.blender")
        params_module = importlib.import_module(f"{installed_module}.core.model.parameters")

        bpy.ops.wm.read_homefile(use_empty=True)
        assert bpy.ops.flame.import_head(filepath=str(flame_dir), n_shape=8, n_expression=4) == {"FINISHED"}
        obj = bpy.context.active_object
        assert type(obj.flame).__module__.startswith(installed_module)
        assert layer.preferences.get_preferences() is not None  # bl_idname is the installed package
        obj.flame.jaw_pose = (0.3, 0.05, 0.0)
        obj.data.shape_keys.key_blocks["expr_002"].value = 2.0
        bpy.context.view_layer.update()
        params = layer.get_parameters(obj)
        assert isinstance(params, params_module.FlameParameters)
        from flame_blender.core import FlameParameters

        expected = flame_reference(FlameParameters(**{k: getattr(params, k) for k in params.to_dict()}))
        from conftest import read_evaluated_vertices

        assert np.abs(read_evaluated_vertices(obj) - expected).max() < 1e-5
    finally:
        addon_utils.disable(installed_module, default_set=True)
        bpy.ops.wm.read_homefile(use_empty=True)
        repos.remove(repo)
        addon_utils.enable(REPO_MODULE, default_set=True)
    assert hasattr(bpy.types.Object, "flame")


def test_the_zip_builds_with_plain_python_and_passes_blenders_validator(tmp_path):
    """No bpy, no site-packages (``-I -S``): the standard library alone builds the zip, and
    Blender's own validator (blender_ext.py from the bpy wheel) accepts it, with the same files
    as the zip Blender's tool builds."""
    import subprocess
    import zipfile

    script = build_extension.REPO_ROOT / "scripts" / "build_extension.py"
    base_python = getattr(sys, "_base_executable", sys.executable)
    result = subprocess.run(
        [base_python, "-I", "-S", str(script), "--output-dir", str(tmp_path / "plain")],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    plain = Path(result.stdout.strip().splitlines()[-1])
    tool = build_extension.find_extension_tool()
    check = subprocess.run([sys.executable, str(tool), "validate", str(plain)],
                           capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stdout + check.stderr
    by_blender = build_extension.build(tmp_path / "blender")
    assert sorted(zipfile.ZipFile(plain).namelist()) == sorted(zipfile.ZipFile(by_blender).namelist())


def test_the_manifest_checks_refuse_what_blender_refuses():
    import tomllib

    manifest = tomllib.loads((build_extension.REPO_ROOT / "blender_manifest.toml").read_text())
    assert build_extension.check_manifest(manifest) == []
    for key, bad in (("id", "flame__blender"), ("version", "0.1"), ("tagline", "Ends with a period."),
                     ("blender_version_min", "4.2"), ("license", "GPL"), ("permissions", {"disk": "x"})):
        assert build_extension.check_manifest({**manifest, key: bad}), key
