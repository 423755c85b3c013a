"""Every panel, UI list, menu entry, operator dialog and preference page of the package, drawn
into a recording layout that checks each call against this Blender version's RNA
(``tests/ui_recorder.py``), in several scenes: nothing in the file, a head active, a head present
but nothing selected, a head with landmark empties and a studio, a head whose model is missing.

Nothing is listed by hand: the classes are discovered from what the package registered, so a
panel or operator added later is drawn here too. ``make test`` runs this on bpy 4.2, 4.5 and 5.0.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest

bpy = pytest.importorskip("bpy")

import ui_recorder  # noqa: E402

from flame_blender.blender import import_head  # noqa: E402

PACKAGE = "flame_blender"


def package_classes(base: type) -> list[type]:
    """Registered subclasses of ``base`` defined in this repository's package."""
    found, stack, seen = [], list(base.__subclasses__()), set()
    while stack:
        cls = stack.pop()
        if cls in seen:
            continue
        seen.add(cls)
        stack.extend(cls.__subclasses__())
        module = getattr(cls, "__module__", "")
        if (module == PACKAGE or module.startswith(PACKAGE + ".")) and getattr(cls, "is_registered", False):
            found.append(cls)
    return sorted(found, key=lambda c: (c.__module__, c.__name__))


def appended_draw_functions() -> list[tuple[str, Callable]]:
    """Draw functions the package appended to Blender's menus and headers (``menu.append``)."""
    out = []
    for name in dir(bpy.types):
        cls = getattr(bpy.types, name, None)
        draw = getattr(cls, "draw", None)
        for function in getattr(draw, "_draw_funcs", None) or ():
            module = getattr(function, "__module__", "") or ""
            if module == PACKAGE or module.startswith(PACKAGE + "."):
                out.append((name, function))
    return out


# -- the scenes -----------------------------------------------------------------------------


def empty_file(flame_dir, tmp_path) -> None:
    bpy.ops.wm.read_homefile(use_empty=True)


def head_active(flame_dir, tmp_path) -> None:
    bpy.ops.wm.read_homefile(use_empty=True)
    head = import_head(bpy.context, flame_dir, n_shape=6, n_expression=4)
    head.flame.jaw_pose = (0.2, 0.0, 0.0)


def head_not_selected(flame_dir, tmp_path) -> None:
    head_active(flame_dir, tmp_path)
    for obj in bpy.context.view_layer.objects:
        obj.select_set(False)
    bpy.context.view_layer.objects.active = None


def head_with_landmarks_and_studio(flame_dir, tmp_path) -> None:
    from flame_blender.blender import landmark_empties
    from flame_blender.blender.render import operators as render_operators
    from flame_blender.blender.render import studio

    head_active(flame_dir, tmp_path)
    head = bpy.context.active_object
    landmark_empties.add_landmark_empties(head, "mediapipe")
    render_operators.setup_studio_for_head(bpy.context.scene, head, studio.StudioSettings())
    bpy.context.scene.flame_render.last_device = "CPU"
    bpy.context.view_layer.objects.active = head


def head_with_missing_model(flame_dir, tmp_path) -> None:
    from flame_blender.blender import runtime
    from flame_blender.core import find_flame_model_file

    folder = tmp_path / "flame-gone"
    folder.mkdir(parents=True)
    model_file = Path(find_flame_model_file(flame_dir))
    shutil.copy2(model_file, folder / model_file.name)
    bpy.ops.wm.read_homefile(use_empty=True)
    import_head(bpy.context, folder, n_shape=3, n_expression=2)
    shutil.rmtree(folder)
    from flame_blender.blender import head as blender_head

    runtime.forget_errors()  # what Reload Model does: the panel then shows why it failed
    blender_head.forget_caches()
    blender_head.update_all_heads(force=True)


def heads_with_problems(flame_dir, tmp_path) -> None:
    """A linked duplicate (Alt+D), a key with a vertex group, and a failed update: the panel's
    warnings and its Make Single User button."""
    head_active(flame_dir, tmp_path)
    head = bpy.context.active_object
    duplicate = head.copy()
    bpy.context.scene.collection.objects.link(duplicate)
    head.data.shape_keys.key_blocks["shape_001"].vertex_group = "lips"
    head.flame.neck_pose = (float("nan"), 0.0, 0.0)


SCENES = {
    "empty file": empty_file,
    "head active": head_active,
    "head present, nothing selected": head_not_selected,
    "head with landmark empties and a studio": head_with_landmarks_and_studio,
    "head whose model file is gone": head_with_missing_model,
    "heads with problems": heads_with_problems,
}


def _parents_visible(cls: type, context, panels: dict[str, type]) -> bool:
    parent = getattr(cls, "bl_parent_id", "")
    if not parent:
        return True
    parent_cls = panels.get(parent) or getattr(bpy.types, parent, None)
    if parent_cls is None:
        return False
    poll = getattr(parent_cls, "poll", None)
    return (poll is None or poll(context)) and _parents_visible(parent_cls, context, panels)


def draw_everything(context) -> tuple[list[ui_recorder.Recording], set[str]]:
    """Draw every visible panel (poll and parents' polls true), its UI lists' items, the menu
    entries and the preferences; returns the recordings and the names of the panels drawn."""
    recordings, drawn = [], set()
    panels = {getattr(cls, "bl_idname", cls.__name__): cls for cls in package_classes(bpy.types.Panel)}
    panels.update({cls.__name__: cls for cls in panels.values()})
    for cls in package_classes(bpy.types.Panel):
        poll = getattr(cls, "poll", None)
        if (poll is not None and not poll(context)) or not _parents_visible(cls, context, panels):
            continue
        if hasattr(cls, "draw_header"):
            recordings.append(ui_recorder.draw(f"{cls.__name__}.draw_header", cls.draw_header, cls, context))
        recording = ui_recorder.draw(f"{cls.__name__}.draw", cls.draw, cls, context)
        recordings.append(recording)
        recordings.extend(ui_recorder.draw_list_items(recording, context))
        drawn.add(cls.__name__)
    for menu, function in appended_draw_functions():
        recordings.append(ui_recorder.draw(f"{menu} <- {function.__name__}", function, object, context))
    for cls in package_classes(bpy.types.AddonPreferences):
        prefs = context.preferences.addons[cls.bl_idname].preferences
        recordings.append(ui_recorder.draw(f"{cls.__name__}.draw", cls.draw, cls, context, source=prefs))
    return recordings, drawn


def operator_defaults(cls: type) -> SimpleNamespace:
    """Stands in for an operator instance in its ``draw``: its RNA and default values."""
    module, _, name = cls.bl_idname.partition(".")
    rna = getattr(getattr(bpy.ops, module), name).get_rna_type()
    values = {
        p.identifier: (p.default_array[:] if getattr(p, "is_array", False) else getattr(p, "default", None))
        for p in rna.properties if p.identifier != "rna_type"
    }
    return SimpleNamespace(
        bl_rna=rna, properties=SimpleNamespace(bl_rna=rna, is_property_set=lambda name: False, **values),
        **values,
    )


# -- the tests -----------------------------------------------------------------------------


def test_the_package_registers_what_this_test_draws(blender_addon):
    """Discovery finds the package's classes (a wrong module filter would make the rest vacuous)."""
    panels = [cls.__name__ for cls in package_classes(bpy.types.Panel)]
    assert "FLAME_PT_head" in panels and "FLAME_PT_render" in panels
    assert "FLAME_UL_coefficients" in [cls.__name__ for cls in package_classes(bpy.types.UIList)]
    operators = [cls.bl_idname for cls in package_classes(bpy.types.Operator)]
    assert "flame.import_head" in operators and "flame.render" in operators
    assert any(menu == "TOPBAR_MT_file_import" for menu, _ in appended_draw_functions())


def test_the_recorder_catches_what_blender_would_refuse(blender_scene):
    """The checks themselves: each wrong call below is one Blender raises on (or draws as an
    error) in a real sidebar."""
    recording = ui_recorder.Recording("probe")
    layout = ui_recorder.RecordingLayout(recording)
    scene = bpy.context.scene
    layout.prop(scene, "frame_current")  # fine
    layout.prop(scene, "no_such_property")
    layout.label(text="x", icon="NO_SUCH_ICON")
    layout.operator("flame.no_such_operator")
    op = layout.operator("flame.import_head")
    op.no_such_keyword = 1
    layout.row(align=True).prop(scene.render, "engine", expand=True, no_such_keyword=True)
    layout.template_list("NO_SUCH_UL", "", scene, "objects", scene, "frame_current")
    layout.prop_enum(scene.render, "engine", "NO_SUCH_ENGINE")
    layout.alertt = True
    layout.no_such_function()
    assert len(recording.errors) == 9, recording.errors


@pytest.mark.parametrize("scene_name", list(SCENES))
def test_every_panel_draws_with_valid_rna(blender_scene, flame_dir, tmp_path, scene_name):
    SCENES[scene_name](flame_dir, tmp_path)
    recordings, drawn = draw_everything(bpy.context)
    errors = [error for recording in recordings for error in recording.errors]
    assert not errors, "\n".join(errors)
    assert "FLAME_PT_head" in drawn
    if scene_name == "head active":
        assert {"FLAME_PT_pose", "FLAME_PT_coefficients"} <= drawn
        assert any(r.where.startswith("FLAME_UL_coefficients.draw_item") for r in recordings)
    if scene_name == "heads with problems":
        operators = [op for r in recordings for op in r.operators()]
        assert "flame.make_single_user" in operators


def test_every_panel_and_ui_list_is_drawn_in_some_scene(blender_scene, flame_dir, tmp_path):
    """A panel whose poll is false in every scene above would go untested: add a scene for it."""
    drawn, items = set(), set()
    for index, build in enumerate(SCENES.values()):
        build(flame_dir, tmp_path / str(index))
        recordings, names = draw_everything(bpy.context)
        drawn |= names
        items |= {r.where.partition(".")[0] for r in recordings if ".draw_item[" in r.where}
    missing = {cls.__name__ for cls in package_classes(bpy.types.Panel)} - drawn
    assert not missing, f"never drawn (poll false in every scene): {sorted(missing)}"
    lists = {cls.__name__ for cls in package_classes(bpy.types.UIList)} - items
    assert not lists, f"UI lists whose items were never drawn: {sorted(lists)}"


@pytest.mark.parametrize("scene_name", list(SCENES))
def test_every_operator_polls_and_draws_its_dialog(blender_scene, flame_dir, tmp_path, scene_name):
    SCENES[scene_name](flame_dir, tmp_path)
    context = bpy.context
    errors = []
    for cls in package_classes(bpy.types.Operator):
        module, _, name = cls.bl_idname.partition(".")
        assert module == "flame" and name.islower(), cls.bl_idname
        getattr(getattr(bpy.ops, module), name).poll()  # raises if poll() raises
        if "draw" in cls.__dict__ or any("draw" in base.__dict__ for base in cls.__mro__[1:-1]
                                           if base.__module__.startswith(PACKAGE)):
            recording = ui_recorder.draw(f"{cls.bl_idname}.draw", cls.draw, cls, context,
                                         source=operator_defaults(cls))
            errors += recording.errors
    for cls in package_classes(getattr(bpy.types, "FileHandler", type("NoFileHandler", (), {}))):
        if ui_recorder._operator_rna(cls.bl_import_operator) is None:
            errors.append(f"{cls.__name__}: no operator {cls.bl_import_operator!r}")
        if hasattr(cls, "poll_drop"):
            cls.poll_drop(context)
    assert not errors, "\n".join(errors)


def test_render_still_unsaved_file_dialog_draws_with_valid_rna(blender_scene):
    """The dialog Render Still opens in a file that was never saved (its other branch, the
    Adjust Last Operation panel, is drawn with the defaults above)."""
    from flame_blender.blender.render.operators import FLAME_OT_render as cls

    source = operator_defaults(cls)
    source.filepath = "//flame_render.png"
    assert not bpy.data.filepath
    recording = ui_recorder.draw("flame.render dialog", cls.draw, cls, bpy.context, source=source)
    assert not recording.errors, recording.errors
    assert any("not saved" in text for text in recording.texts())
