"""A recording ``UILayout`` that checks every call against the running Blender's RNA.

Panels, UI lists, menus, preferences and operator dialogs draw into ``self.layout``; in a
background process nothing is drawn, so a wrong property name, enum value, icon or operator id
only shows up as a traceback in a user's sidebar. :class:`RecordingLayout` stands in for the
layout: each method call is looked up in ``bpy.types.UILayout.bl_rna.functions`` (so a function
that this Blender version lacks fails), its keyword names are checked against that function's
parameters, enum arguments (``icon``, ``type``...) against their items, and the semantic
arguments against the data they name:

- ``prop(data, name, index=...)``: ``name`` is a property of ``data``'s RNA, ``index`` within its
  array length; ``prop_enum`` / ``prop_search`` / ``prop_menu_enum`` likewise, with enum values;
- ``operator(idname, ...)``: the operator exists; the returned properties accept only the
  operator's property names, and enum values from its items;
- ``template_list``: the UI list class is registered, the collection and the active index exist;
- ``menu`` / ``popover``: the menu or panel class is registered;
- attributes set on a layout (``alert``, ``enabled``...) exist in ``UILayout``.

Every problem is collected in :attr:`Recording.errors` with the call that caused it; the calls
themselves are kept in :attr:`Recording.calls` (labels, operators...) for assertions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import bpy


@dataclass
class Call:
    function: str
    arguments: dict[str, Any]


@dataclass
class Recording:
    """What one draw produced: every layout call, and every mismatch with the RNA."""

    where: str
    calls: list[Call] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    lists: list[dict[str, Any]] = field(default_factory=list)  # template_list arguments

    def error(self, message: str) -> None:
        self.errors.append(f"{self.where}: {message}")

    def texts(self) -> list[str]:
        """Every label text and every text given to a widget, in drawing order."""
        return [str(call.arguments["text"]) for call in self.calls if call.arguments.get("text")]

    def operators(self) -> list[str]:
        return [call.arguments["operator"] for call in self.calls if call.function == "operator"]


_LAYOUT_RNA = bpy.types.UILayout.bl_rna


def _inputs(function) -> list:
    return [p for p in function.parameters if not p.is_output]


def _check_enum(recording: Recording, what: str, parameter, value) -> None:
    """``value`` must be one of the enum's items (a set of them for a flag enum)."""
    items = parameter.enum_items.keys()
    if not items:  # dynamic enum (items from a callback): nothing static to check against
        return
    values = value if isinstance(value, (set, frozenset)) else {value}
    for one in values:
        if one not in items:
            recording.error(f"{what}: {one!r} is not one of {parameter.identifier}'s items")


def rna_property(recording: Recording, what: str, data, name: str):
    """The RNA property ``name`` of ``data``, or None (error recorded)."""
    if data is None:
        recording.error(f"{what}: data is None for property {name!r}")
        return None
    rna = getattr(data, "bl_rna", None)
    if rna is None:
        recording.error(f"{what}: {data!r} is not an RNA struct (property {name!r})")
        return None
    if name.startswith('["'):  # ID property: exists only at run time
        return None
    prop = rna.properties.get(name)
    if prop is None:
        recording.error(f"{what}: {rna.identifier} has no property {name!r}")
    return prop


def _operator_rna(idname: str):
    module, _, name = idname.partition(".")
    if not name or not module.islower():
        return None
    try:
        return getattr(getattr(bpy.ops, module), name).get_rna_type()
    except (AttributeError, KeyError):
        return None


class OperatorProperties:
    """What ``layout.operator()`` returns: setting a property checks its name and value."""

    def __init__(self, recording: Recording, idname: str, rna) -> None:
        object.__setattr__(self, "_recording", recording)
        object.__setattr__(self, "_idname", idname)
        object.__setattr__(self, "_rna", rna)
        object.__setattr__(self, "values", {})

    def __setattr__(self, name: str, value) -> None:
        recording, rna = self._recording, self._rna
        what = f"operator {self._idname!r}"
        prop = rna.properties.get(name) if rna is not None else None
        if rna is not None and (prop is None or name == "rna_type"):
            recording.error(f"{what}: has no property {name!r}")
        elif prop is not None and prop.type == "ENUM":
            _check_enum(recording, f"{what}.{name}", prop, value)
        self.values[name] = value

    def __getattr__(self, name: str):
        if name in self.values:
            return self.values[name]
        prop = self._rna.properties.get(name) if self._rna is not None else None
        if prop is None:
            self._recording.error(f"operator {self._idname!r}: has no property {name!r}")
            return None
        return getattr(prop, "default", None)


class RecordingLayout:
    """Stands in for ``bpy.types.UILayout``; see the module docstring."""

    def __init__(self, recording: Recording) -> None:
        object.__setattr__(self, "_recording", recording)

    # Attributes (alert, enabled, use_property_split...) must exist in this Blender's UILayout.
    def __setattr__(self, name: str, value) -> None:
        prop = _LAYOUT_RNA.properties.get(name)
        if prop is None or name == "rna_type":
            self._recording.error(f"UILayout has no attribute {name!r}")
        elif prop.type == "ENUM":
            _check_enum(self._recording, f"UILayout.{name}", prop, value)
        object.__setattr__(self, name, value)

    def __getattr__(self, name: str):
        function = _LAYOUT_RNA.functions.get(name)
        if function is None:
            prop = _LAYOUT_RNA.properties.get(name)
            if prop is not None:
                return getattr(prop, "default", None)
            self._recording.error(f"UILayout has no function {name!r}")
            return lambda *args, **kwargs: None

        def call(*args, **kwargs):
            return self._call(name, function, args, kwargs)

        return call

    def _call(self, name: str, function, args: tuple, kwargs: dict):
        recording = self._recording
        inputs = _inputs(function)
        if len(args) > len(inputs):
            recording.error(f"{name}(): {len(args)} positional arguments, it takes {len(inputs)}")
        arguments = {p.identifier: value for p, value in zip(inputs, args, strict=False)}
        by_name = {p.identifier: p for p in inputs}
        for key, value in kwargs.items():
            if key not in by_name:
                recording.error(f"{name}(): no keyword {key!r} in this Blender")
                continue
            if key in arguments:
                recording.error(f"{name}(): {key!r} given twice")
            arguments[key] = value
        for parameter in inputs:
            if parameter.is_required and parameter.identifier not in arguments:
                recording.error(f"{name}(): missing required argument {parameter.identifier!r}")
            value = arguments.get(parameter.identifier)
            if value is not None and parameter.type == "ENUM":
                _check_enum(recording, f"{name}({parameter.identifier}=...)", parameter, value)
        recording.calls.append(Call(name, arguments))
        check = getattr(type(self), f"_check_{name}", None)
        result = check(self, arguments) if check is not None else None
        if result is not None:
            return result
        outputs = [p for p in function.parameters if p.is_output]
        layouts = [p for p in outputs if getattr(p, "fixed_type", None) is not None
                   and p.fixed_type.identifier == "UILayout"]
        if len(layouts) == 1:
            return RecordingLayout(recording)
        if len(layouts) > 1:  # panel(): (header, body); both drawn, as if open
            return tuple(RecordingLayout(recording) for _ in layouts)
        return None

    # -- semantic checks ------------------------------------------------------------------

    def _check_prop(self, a: dict) -> None:
        prop = rna_property(self._recording, "prop()", a.get("data"), a.get("property", ""))
        index = a.get("index", -1)
        if prop is not None and index is not None and index >= 0:
            length = getattr(prop, "array_length", 0)
            if index >= max(length, 0) or length == 0:
                self._recording.error(f"prop(): index {index} outside {prop.identifier!r} (length {length})")

    def _check_enum_value(self, function: str, a: dict, key: str = "value") -> None:
        prop = rna_property(self._recording, f"{function}()", a.get("data"), a.get("property", ""))
        if prop is None:
            return
        if prop.type != "ENUM":
            self._recording.error(f"{function}(): {prop.identifier!r} is not an enum")
        elif key in a:
            _check_enum(self._recording, f"{function}({prop.identifier})", prop, a[key])

    def _check_prop_enum(self, a: dict) -> None:
        self._check_enum_value("prop_enum", a)

    def _check_prop_menu_enum(self, a: dict) -> None:
        self._check_enum_value("prop_menu_enum", a, key="")

    def _check_props_enum(self, a: dict) -> None:
        self._check_enum_value("props_enum", a, key="")

    def _check_prop_tabs_enum(self, a: dict) -> None:
        self._check_enum_value("prop_tabs_enum", a, key="")

    def _check_prop_search(self, a: dict) -> None:
        rna_property(self._recording, "prop_search()", a.get("data"), a.get("property", ""))
        rna_property(self._recording, "prop_search()", a.get("search_data"), a.get("search_property", ""))

    def _operator(self, function: str, a: dict, enum_key: str | None = None):
        idname = a.get("operator", "")
        rna = _operator_rna(idname)
        if rna is None:
            self._recording.error(f"{function}(): no operator {idname!r} in this Blender")
        elif enum_key is not None:
            prop = rna.properties.get(a.get(enum_key, ""))
            if prop is None or prop.type != "ENUM":
                self._recording.error(f"{function}(): {idname!r} has no enum {a.get(enum_key)!r}")
        return OperatorProperties(self._recording, idname, rna)

    def _check_operator(self, a: dict):
        return self._operator("operator", a)

    def _check_operator_menu_hold(self, a: dict):
        return self._operator("operator_menu_hold", a)

    def _check_operator_enum(self, a: dict) -> None:
        self._operator("operator_enum", a, enum_key="property")

    def _check_operator_menu_enum(self, a: dict):
        return self._operator("operator_menu_enum", a, enum_key="property")

    def _check_menu(self, a: dict) -> None:
        menu = a.get("menu", "")
        cls = getattr(bpy.types, menu, None)
        if cls is None or not issubclass(cls, bpy.types.Menu):
            self._recording.error(f"menu(): no menu {menu!r} registered")

    def _check_popover(self, a: dict) -> None:
        panel = a.get("panel", "")
        cls = getattr(bpy.types, panel, None)
        if cls is None or not issubclass(cls, bpy.types.Panel):
            self._recording.error(f"popover(): no panel {panel!r} registered")

    def _check_template_list(self, a: dict) -> None:
        recording = self._recording
        listtype = a.get("listtype_name", "")
        cls = getattr(bpy.types, listtype, None)
        if cls is None or not issubclass(cls, bpy.types.UIList):
            recording.error(f"template_list(): no UI list {listtype!r} registered")
        collection = rna_property(recording, "template_list()", a.get("dataptr"), a.get("propname", ""))
        if collection is not None and collection.type != "COLLECTION":
            recording.error(f"template_list(): {collection.identifier!r} is not a collection")
        active = rna_property(
            recording, "template_list()", a.get("active_dataptr"), a.get("active_propname", "")
        )
        if active is not None and active.type != "INT":
            recording.error(f"template_list(): {active.identifier!r} is not an integer")
        recording.lists.append(a)


# -- drawing the package's classes --------------------------------------------------------


class DrawProxy:
    """``self`` for a draw function: ``layout`` is the recorder; other attributes come from
    ``source`` (an instance such as the add-on preferences) or the class; methods are bound to
    the proxy."""

    def __init__(self, cls: type, layout: RecordingLayout, source: Any = None, **values: Any) -> None:
        self.__dict__.update(values)
        self.__dict__["layout"] = layout
        self.__dict__["_cls"] = cls
        self.__dict__["_source"] = source

    def __getattr__(self, name: str):
        source = self.__dict__["_source"]
        if source is not None and hasattr(source, name):
            return getattr(source, name)
        value = getattr(self.__dict__["_cls"], name)
        if callable(value) and not isinstance(value, type):
            return value.__get__(self, type(self))
        return value


def draw(where: str, function, cls: type, context, source: Any = None, **values: Any) -> Recording:
    """Call ``function(proxy, context)`` with a recording layout; returns the recording."""
    recording = Recording(where)
    function(DrawProxy(cls, RecordingLayout(recording), source, **values), context)
    return recording


def draw_list_items(recording: Recording, context, limit: int = 12) -> list[Recording]:
    """Each ``template_list`` the recording saw: run its UI list's ``filter_items`` (when it has
    one) and ``draw_item`` for up to ``limit`` items, each with a recording layout."""
    out = []
    ui_list_defaults = {
        p.identifier: getattr(p, "default", None) for p in bpy.types.UIList.bl_rna.properties
        if p.identifier != "rna_type"
    }
    ui_list_defaults["bitflag_filter_item"] = 1 << 30
    ui_list_defaults["filter_name"] = ""
    for a in recording.lists:
        cls = getattr(bpy.types, a.get("listtype_name", ""), None)
        data, propname = a.get("dataptr"), a.get("propname", "")
        if cls is None or data is None or not hasattr(data, propname):
            continue
        items = getattr(data, propname)
        active_data, active_propname = a.get("active_dataptr"), a.get("active_propname", "")
        if "filter_items" in cls.__dict__:
            proxy = DrawProxy(cls, RecordingLayout(Recording(f"{cls.__name__}.filter_items")),
                              **ui_list_defaults)
            flags, order = cls.filter_items(proxy, context, data, propname)
            if len(flags) not in (0, len(items)):
                recording.error(f"{cls.__name__}.filter_items: {len(flags)} flags for {len(items)} items")
        for index, item in enumerate(list(items)[:limit]):
            item_recording = Recording(f"{cls.__name__}.draw_item[{index}]")
            proxy = DrawProxy(cls, RecordingLayout(item_recording), **ui_list_defaults)
            cls.draw_item(proxy, context, proxy.layout, data, item, 0, active_data, active_propname, index)
            out.append(item_recording)
    return out
