"""In-memory state that is not saved in the .blend: loaded models, backends and errors.

Models are cached by their resolved file path, backends by (path, kind, counts), so many heads of
one model share one copy. A model that cannot be loaded is remembered with the reason, shown in
the panel, and printed once, not on every frame.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from .. import core

_models: dict[str, dict[str, Any]] = {}
_templates: dict[str, np.ndarray] = {}
_backends: dict[tuple[str, str, int, int, bool], Any] = {}
_errors: dict[str, str] = {}
_printed: set[str] = set()
_backend_notes: dict[str, str] = {}
_last_backend_name: str | None = None


_resolved: dict[str, str] = {}


def model_key(path: str | Path) -> str:
    """The absolute path (cached: this runs on every pose update). Symbolic links are kept, not
    resolved: the extras beside a linked model are the link's folder's (``core.extras_folder``)."""
    key = _resolved.get(path) if isinstance(path, str) else None
    if key is None:
        key = str(core.absolute_path(path))
        if isinstance(path, str):
            _resolved[path] = key
    return key


def get_model(path: str | Path, teeth: bool = False) -> dict[str, Any]:
    """The model dict (``core.load_flame``) of one model file, loaded once per session.

    ``teeth``: with VHAP's 120 tooth vertices added (``core.add_teeth``), made once too.

    Raises ``FlameFileError`` (and remembers the reason for :func:`model_error`) when it cannot be
    loaded.
    """
    key = model_key(path)
    model = _models.get(key)
    if model is None:
        if key in _errors:  # failed before: do not re-read it on every update
            raise core.FlameFileError(None, _errors[key])  # same text as the first time
        try:
            model = core.load_flame(key)
        except Exception as error:
            _errors[key] = str(error)
            raise
        _models[key] = model
        _errors.pop(key, None)
    if teeth:
        with_teeth = _models.get(key + "#teeth")
        if with_teeth is None:
            with_teeth = _models[key + "#teeth"] = core.add_teeth(model)
        return with_teeth
    return model


def template(path: str | Path, teeth: bool = False) -> np.ndarray:
    """The model's template vertices as float32 ``(5023, 3)`` (5143 with teeth): the ``Basis`` key."""
    key = model_key(path) + ("#teeth" if teeth else "")
    basis = _templates.get(key)
    if basis is None:
        basis = np.ascontiguousarray(get_model(path, teeth)["v_template"], dtype=np.float32)
        _templates[key] = basis
    return basis


def get_backend(path: str | Path, n_shape: int, n_expression: int, teeth: bool = False) -> Any:
    """A ``core.create_backend`` object for this model and these counts, with the preferred kind.

    When the preferred kind is not available (no PyTorch, no CUDA) the automatic choice is used
    and the reason is kept for :func:`backend_note`.
    """
    from .preferences import backend_kind

    global _last_backend_name
    key = model_key(path)
    kind = backend_kind()
    cache_key = (key, kind, int(n_shape), int(n_expression), bool(teeth))
    backend = _backends.get(cache_key)
    if backend is None:
        model = get_model(key, teeth)
        try:
            backend = core.create_backend(model, kind, n_shape=n_shape, n_expression=n_expression)
            _backend_notes.pop(kind, None)
        except Exception as error:
            if kind == "auto":
                raise
            _backend_notes[kind] = f"{kind} unavailable ({error}); using the automatic choice"
            backend = core.create_backend(model, "auto", n_shape=n_shape, n_expression=n_expression)
        _backends[cache_key] = backend
        if backend.name.startswith("PyTorch"):
            _single_torch_thread()
    _last_backend_name = backend.name
    return backend


def _single_torch_thread() -> None:
    """One head is far too little work for several threads, and inside Blender torch's OpenMP
    threads fight Blender's own worker threads: measured here, a pose update took 23 ms with
    torch's default 2 threads right after a depsgraph evaluation, and 0.7 ms with one."""
    import torch

    if torch.get_num_threads() != 1:
        torch.set_num_threads(1)


def backend_in_use_label() -> str:
    from .preferences import backend_kind

    note = _backend_notes.get(backend_kind())
    name = _last_backend_name or "none loaded yet"
    return f"{name} ({note})" if note else name


def backend_note() -> str | None:
    from .preferences import backend_kind

    return _backend_notes.get(backend_kind())


def model_error(path: str | Path) -> str | None:
    """Why this model could not be loaded, or None."""
    if not path:
        return "no model path stored on this head"
    return _errors.get(model_key(path))


def report_once(message: str) -> None:
    """Print a handler-time problem once per session instead of on every frame, and show it in
    the status bar of a running Blender (handlers cannot report; an operator run later can)."""
    if message not in _printed:
        _printed.add(message)
        print(f"FLAME: {message}", file=sys.stderr)
        _notify_status_bar(message)


def _notify_status_bar(message: str) -> None:
    import bpy

    if bpy.app.background:
        return  # no status bar: stderr is where a background user looks

    def report() -> None:
        import contextlib

        with contextlib.suppress(Exception):  # the window may be gone; stderr has it already
            bpy.ops.flame.report_problem(message=message)

    bpy.app.timers.register(report, first_interval=0.0)


#: Head name -> why its last update failed (shown in its panel until an update succeeds).
_update_errors: dict[str, str] = {}


def record_update_error(name: str, message: str) -> None:
    _update_errors[name] = message


def clear_update_error(name: str) -> None:
    if _update_errors:
        _update_errors.pop(name, None)


def update_error(name: str) -> str | None:
    """Why the head called ``name`` could not be updated last time, or None."""
    return _update_errors.get(name)


def head_backend_label(path: str, n_shape: int, n_expression: int, teeth: bool = False) -> str:
    """The backend the head with this model and these counts uses (not the last one used)."""
    from .preferences import backend_kind

    if not path:
        return "none (no model path)"
    key = model_key(path)
    if key in _errors:
        return "none (model not loaded)"
    backend = _backends.get((key, backend_kind(), int(n_shape), int(n_expression), bool(teeth)))
    if backend is None:
        return "not loaded yet"
    note = _backend_notes.get(backend_kind())
    return f"{backend.name} ({note})" if note else backend.name


def forget_errors() -> None:
    """Let models that failed to load be tried again (after loading a file, on Reload)."""
    for key in list(_errors):
        _models.pop(key, None)
        _models.pop(key + "#teeth", None)
    _errors.clear()
    _resolved.clear()
    _printed.clear()
    _update_errors.clear()


def backend_settings_changed() -> None:
    _backends.clear()
    _backend_notes.clear()
    from . import head

    head.update_all_heads(force=True)


def clear() -> None:
    """Drop every cached model and backend (unregister)."""
    global _last_backend_name
    _models.clear()
    _resolved.clear()
    _templates.clear()
    _backends.clear()
    _errors.clear()
    _printed.clear()
    _backend_notes.clear()
    _update_errors.clear()
    _last_backend_name = None


# -- PyTorch, imported in the background --------------------------------------------------------
# Importing torch takes about a second. Done on first use, that second would freeze the first
# import or slider move (or the opening of a file with heads). When the backend may be PyTorch
# and torch is installed, it is imported in a background thread as soon as the extension is
# registered; a first use before it is done simply waits for the same import (Python's module
# lock), never imports twice.

_preload_thread = None


def start_torch_preload() -> bool:
    """Start importing torch in a background thread; True if a thread was started."""
    import importlib.util
    import threading

    from .preferences import backend_kind

    global _preload_thread
    if "torch" in sys.modules or backend_kind() == "numpy":
        return False
    if _preload_thread is not None and _preload_thread.is_alive():
        return False
    if importlib.util.find_spec("torch") is None:
        return False

    def preload() -> None:
        import contextlib

        # torch broken here: the NumPy backend will be chosen, and the panel says so
        with contextlib.suppress(Exception):
            import torch  # noqa: F401

    _preload_thread = threading.Thread(target=preload, name="flame-torch-import", daemon=True)
    _preload_thread.start()
    return True


def wait_for_torch_preload(timeout: float | None = None) -> None:
    if _preload_thread is not None:
        _preload_thread.join(timeout)
