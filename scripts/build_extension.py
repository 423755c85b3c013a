"""Build the Blender extension: dist/flame_blender-<version>.zip.

The zip holds blender_manifest.toml and the contents of the ``flame_blender`` package at its root
(that is how Blender installs an extension: ``bl_ext.<repo>.flame_blender``), without caches or
tests. Three ways, the first that applies:

1. ``--blender /path/to/blender``: Blender's own ``blender --command extension build`` and
   ``validate``;
2. the ``bpy`` module is installed (the development environment): the same tool,
   ``blender_ext.py``, from inside the wheel;
3. plain Python 3.11 (nothing installed): the manifest is checked here against the rules Blender's
   validator enforces, and the zip is written with :mod:`zipfile`. The test suite installs this
   zip with Blender's own installer.

    python scripts/build_extension.py [--output-dir dist] [--blender PATH] [--plain]
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PACKAGE = REPO_ROOT / "flame_blender"
MANIFEST = REPO_ROOT / "blender_manifest.toml"
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", "tests", ".*")
PERMISSIONS = {"files", "network", "clipboard", "camera", "microphone"}
REQUIRED = ("schema_version", "id", "version", "name", "tagline", "maintainer", "type",
            "blender_version_min", "license")


def find_extension_tool() -> Path | None:
    """``blender_ext.py`` inside the bpy wheel (found without importing bpy), or None."""
    spec = importlib.util.find_spec("bpy")
    if spec is None or not spec.submodule_search_locations:
        return None
    bpy_dir = Path(next(iter(spec.submodule_search_locations)))
    candidates = sorted(bpy_dir.glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
    return candidates[-1] if candidates else None


def check_manifest(manifest: dict) -> list[str]:
    """The problems Blender's validator would report for the fields this project uses."""
    problems = [f"missing {key!r}" for key in REQUIRED if key not in manifest]
    ident = str(manifest.get("id", ""))
    if not ident.isidentifier() or "__" in ident or ident.startswith("_") or ident.endswith("_"):
        problems.append(f"id {ident!r}: a Python identifier without '__' or a leading/trailing '_'")
    if not re.fullmatch(r"\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?", str(manifest.get("version", ""))):
        problems.append(f"version {manifest.get('version')!r}: expected semantic versioning, e.g. 1.0.0")
    tagline = str(manifest.get("tagline", ""))
    if len(tagline) > 64 or tagline.endswith((".", "!", "?")) or not tagline:
        problems.append("tagline: 1 to 64 characters, not ending with punctuation")
    for key in ("blender_version_min", "blender_version_max"):
        if key in manifest and not re.fullmatch(r"\d+\.\d+\.\d+", str(manifest[key])):
            problems.append(f"{key} {manifest[key]!r}: expected X.Y.Z")
    if manifest.get("type") not in ("add-on", "theme"):
        problems.append(f"type {manifest.get('type')!r}: expected 'add-on' or 'theme'")
    licenses = manifest.get("license")
    if not isinstance(licenses, list) or not licenses or not all(
        isinstance(item, str) and item.startswith("SPDX:") for item in licenses
    ):
        problems.append("license: a list of 'SPDX:...' strings")
    permissions = manifest.get("permissions", {})
    if not isinstance(permissions, dict) or not set(permissions) <= PERMISSIONS or not all(
        isinstance(reason, str) and reason for reason in permissions.values()
    ):
        problems.append(f"permissions: a table of reasons for keys among {sorted(PERMISSIONS)}")
    return problems


def _stage(staging: Path, manifest: dict) -> Path:
    source = staging / manifest["id"]
    shutil.copytree(PACKAGE, source, ignore=IGNORED)
    shutil.copy2(MANIFEST, source / "blender_manifest.toml")
    return source


def build(output_dir: Path = REPO_ROOT / "dist", blender: Path | None = None, plain: bool = False) -> Path:
    """Stage, build and validate; returns the zip's path."""
    manifest = tomllib.loads(MANIFEST.read_text(encoding="utf-8"))
    problems = check_manifest(manifest)
    if problems:
        raise SystemExit("build_extension: blender_manifest.toml: " + "; ".join(problems))
    output_dir.mkdir(parents=True, exist_ok=True)
    output = output_dir / f"{manifest['id']}-{manifest['version']}.zip"
    tool = None if plain or blender else find_extension_tool()
    with tempfile.TemporaryDirectory(prefix="flame-extension-") as staging:
        source = _stage(Path(staging), manifest)
        output.unlink(missing_ok=True)
        if blender is not None:
            command = [str(blender), "--factory-startup", "--command", "extension"]
            _run(command, "build", "--source-dir", str(source), "--output-filepath", str(output))
            _run(command, "validate", str(output))
        elif tool is not None:
            command = [sys.executable, str(tool)]
            _run(command, "build", "--source-dir", str(source), "--output-filepath", str(output))
            _run(command, "validate", str(output))
        else:
            write_zip(source, output)
    return output


def write_zip(source: Path, output: Path) -> None:
    """The package's files at the zip's root, in a stable order."""
    temporary = output.with_name(f".{output.name}.tmp")
    with zipfile.ZipFile(temporary, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(p for p in source.rglob("*") if p.is_file()):
            archive.write(path, path.relative_to(source).as_posix())
    temporary.replace(output)


def _run(command: list[str], *args: str) -> None:
    result = subprocess.run([*command, *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(
            f"build_extension: `extension {args[0]}` failed:\n{result.stdout}{result.stderr}"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", type=Path, default=REPO_ROOT / "dist")
    parser.add_argument("--blender", type=Path, default=None,
                        help="a Blender 4.2+ executable: build and validate with it")
    parser.add_argument("--plain", action="store_true",
                        help="plain Python only, even where the bpy module is installed")
    args = parser.parse_args(argv)
    print(build(args.output_dir, blender=args.blender, plain=args.plain))


if __name__ == "__main__":
    main()
