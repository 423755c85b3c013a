"""What the command-line scripts share: their arguments under Blender, and finding the package.

Each script puts its own folder on ``sys.path`` first, so this imports under
``blender --background --python scripts/X.py`` as well as ``python scripts/X.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def script_arguments(argv: list[str]) -> list[str]:
    """Blender passes its own arguments too: ours follow ``--`` when it is there."""
    return argv[argv.index("--") + 1 :] if "--" in argv else argv[1:]


def add_repository_to_path() -> None:
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))


def import_package():
    """The flame_blender package and whether we registered it: an enabled installed extension
    (already registered), else this repository's copy (registered here)."""
    try:
        import addon_utils  # only inside Blender / bpy

        for module in addon_utils.modules():
            name = module.__name__
            if name.endswith(".flame_blender") and addon_utils.check(name)[1]:
                return module, False
    except ImportError:
        pass
    add_repository_to_path()
    import flame_blender

    flame_blender.register()
    return flame_blender, True
