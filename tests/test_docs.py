"""The README and docs/ as a user reads them: every operator named, preferences named as Blender
shows them, and no pointer to a file outside the repository (a user's clone is all they have)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]


def test_every_registered_operator_is_listed_in_the_readme(blender_addon):
    bpy = blender_addon
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    registered = sorted(
        cls.bl_idname for cls in _subclasses(bpy.types.Operator)
        if cls.__module__.startswith("flame_blender") and cls.is_registered
    )
    assert "flame.import_head" in registered
    missing = [idname for idname in registered if f"`{idname}`" not in readme and f"{idname}(" not in readme]
    assert not missing, f"operators the README does not name: {missing}"


def _subclasses(base: type) -> list[type]:
    out, stack = [], list(base.__subclasses__())
    while stack:
        cls = stack.pop()
        out.append(cls)
        stack.extend(cls.__subclasses__())
    return out


def test_preferences_are_named_as_blender_shows_them():
    name = tomllib.loads((REPO_ROOT / "blender_manifest.toml").read_text(encoding="utf-8"))["name"]
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    named = re.findall(r"Preferences > Add-ons >\s+([^*>\n]+?)\s*(?:>|\*)", readme)
    assert named, "the README should say where the preferences are"
    assert {n.strip() for n in named} == {name}, named


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: p.name)
def test_documents_point_only_inside_the_repository(document):
    text = document.read_text(encoding="utf-8")
    assert "shared/" not in text, f"{document.name} cites a file users do not have"
    for target in re.findall(r"\]\(([^)#\s]+)\)", text):
        if re.match(r"[a-z]+://", target):
            continue
        assert (document.parent / target).resolve().is_relative_to(REPO_ROOT), target
        assert (document.parent / target).exists(), f"{document.name} links to missing {target}"
