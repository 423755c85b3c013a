"""Build the Blender extension: dist/flame_blender-<version>.zip, validated by Blender's own tool.

The zip holds blender_manifest.toml and the contents of the ``flame_blender`` package at its root
(that is how Blender installs an extension: ``bl_ext.<repo>.flame_blender``), without caches or
tests. The manifest check and the build use ``blender_ext.py`` from the installed ``bpy`` wheel,
the same code as ``blender --command extension build``.

    python scripts/build_extension.py [--output-dir dist]
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PACKAGE = REPO_ROOT / "flame_blender"
MANIFEST = REPO_ROOT / "blender_manifest.toml"
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", "tests", ".*")


def find_extension_tool() -> Path:
    """``blender_ext.py`` inside the bpy wheel (found without importing bpy)."""
    spec = importlib.util.find_spec("bpy")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("build_extension: the bpy module is not installed; run `make test` first")
    bpy_dir = Path(next(iter(spec.submodule_search_locations)))
    candidates = sorted(bpy_dir.glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
    if not candidates:
        raise SystemExit(f"build_extension: no blender_ext.py under {bpy_dir}")
    return candidates[-1]


def build(output_dir: Path = REPO_ROOT / "dist") -> Path:
    """Stage, build and validate; returns the zip's path."""
    manifest = tomllib.loads(MANIFEST.read_text(encoding="utf-8"))
    output_dir.mkdir(parents=True, exist_ok=True)
    output = output_dir / f"{manifest['id']}-{manifest['version']}.zip"
    tool = find_extension_tool()
    with tempfile.TemporaryDirectory(prefix="flame-extension-") as staging:
        source = Path(staging) / manifest["id"]
        shutil.copytree(PACKAGE, source, ignore=IGNORED)
        shutil.copy2(MANIFEST, source / "blender_manifest.toml")
        output.unlink(missing_ok=True)
        _run(tool, "build", "--source-dir", str(source), "--output-filepath", str(output))
    _run(tool, "validate", str(output))
    return output


def _run(tool: Path, *args: str) -> None:
    result = subprocess.run(
        [sys.executable, str(tool), *args], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise SystemExit(
            f"build_extension: `blender_ext {args[0]}` failed:\n{result.stdout}{result.stderr}"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", type=Path, default=REPO_ROOT / "dist")
    args = parser.parse_args(argv)
    print(build(args.output_dir))


if __name__ == "__main__":
    main()
