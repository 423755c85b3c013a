"""What keeps a head from being exact FLAME, said in the panel instead of silently drifting.

- A coefficient key with a vertex group, or relative to a key other than ``Basis``: Blender then
  mixes something that is not a FLAME blend shape, so the pose key cannot match it. (A muted key
  is handled: its coefficient counts as zero, as in Blender's mix.)
- Relative shape keys turned off (absolute keys): the keys are no longer a linear mix.
- Linked duplicates (Alt+D): several heads share one mesh, hence one pose key, while each has its
  own pose. Only one of them can be exact; *Make Single User* gives each its own mesh.
- The last update failed for another reason than a missing model (that one has its own box).
"""

from __future__ import annotations

from dataclasses import dataclass

import bpy

from . import head, pose_correction, runtime


@dataclass(frozen=True)
class Problem:
    message: str
    operator: str = ""  # an operator that fixes it, if there is one


def coefficient_key_problems(obj: bpy.types.Object) -> list[Problem]:
    key = obj.data.shape_keys
    if key is None:
        return []
    problems = []
    if not key.use_relative:
        problems.append(Problem("Shape keys are not relative: turn Relative on in the Shape Keys panel"))
    grouped, relative = [], []
    for block in key.key_blocks:
        if not block.name.startswith((head.SHAPE_PREFIX, head.EXPRESSION_PREFIX)):
            continue
        if block.vertex_group:
            grouped.append(block.name)
        if block.relative_key is not None and block.relative_key.name != head.BASIS_KEY:
            relative.append(block.name)
    for names, what in ((grouped, "use a vertex group"), (relative, "are relative to a key other than Basis")):
        if names:
            listed = ", ".join(names[:3]) + ("..." if len(names) > 3 else "")
            problems.append(Problem(f"{listed} {what}: the head is not exact FLAME until cleared"))
    return problems


def linked_duplicates(obj: bpy.types.Object) -> list[bpy.types.Object]:
    """Other heads that share this head's mesh (and so its pose key)."""
    if obj.data.users < 2:
        return []
    return [other for other in bpy.data.objects if other is not obj and other.data == obj.data
            and head.is_head(other)]


def head_problems(obj: bpy.types.Object) -> list[Problem]:
    """Everything the panel should warn about for this head (empty when it is exact)."""
    problems = coefficient_key_problems(obj)
    sharing = linked_duplicates(obj)
    if sharing:
        names = ", ".join(other.name for other in sharing[:3])
        problems.append(Problem(
            f"Shares its mesh with {names} (linked duplicate): one pose key for several poses",
            "flame.make_single_user",
        ))
    error = runtime.update_error(obj.name)
    if error and not runtime.model_error(obj.flame.model_path):
        problems.append(Problem(f"Last update failed: {error}"))
    return problems


def make_single_user(obj: bpy.types.Object) -> bool:
    """Give ``obj`` its own copy of its mesh (shape keys included); True when it was shared."""
    if obj.data.users < 2:
        return False
    obj.data = obj.data.copy()
    pose_correction.ensure(obj)  # its own pose correction too (the modifier was copied with it)
    head.update_head(obj)
    return True
