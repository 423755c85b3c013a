"""Which device Cycles renders on: the best GPU backend available, else the CPU.

``select_cycles_device(scene, "AUTO")`` tries the GPU backends in the order of ``GPU_BACKENDS``
(OptiX, CUDA, HIP, oneAPI, Metal) and uses the first with a device; a named backend uses that one.
When nothing is found it renders on the CPU and says so in the returned message: never an
exception, because a render on the CPU is better than no render.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import bpy

#: Preference / ``--device`` values, in menu order.
DEVICE_ITEMS = [
    ("AUTO", "Auto", "The best GPU backend found (OptiX, CUDA, HIP, oneAPI, Metal), else the CPU"),
    ("OPTIX", "OptiX", "NVIDIA GPUs with ray-tracing cores (RTX)"),
    ("CUDA", "CUDA", "NVIDIA GPUs"),
    ("HIP", "HIP", "AMD GPUs"),
    ("ONEAPI", "oneAPI", "Intel GPUs"),
    ("METAL", "Metal", "Apple GPUs (macOS)"),
    ("CPU", "CPU", "The processor"),
]
DEVICE_NAMES: tuple[str, ...] = tuple(item[0] for item in DEVICE_ITEMS)
GPU_BACKENDS: tuple[str, ...] = ("OPTIX", "CUDA", "HIP", "ONEAPI", "METAL")
_LABELS = {item[0]: item[1] for item in DEVICE_ITEMS}


@dataclass
class DeviceChoice:
    """What :func:`select_cycles_device` chose."""

    requested: str  # one of DEVICE_NAMES
    backend: str  # "CPU" or the GPU backend in use
    devices: list[str] = field(default_factory=list)  # device names in use
    message: str = ""  # one line for the user: what is used and, after a fall-back, why

    @property
    def fell_back(self) -> bool:
        """True when a GPU was asked for (or Auto found none) and the CPU is used instead."""
        return self.backend == "CPU" and self.requested != "CPU"

    @property
    def label(self) -> str:
        """Short text for tables and the panel, e.g. ``OptiX (NVIDIA H100)`` or ``CPU``."""
        names = ", ".join(self.devices)
        return f"{_LABELS[self.backend]} ({names})" if names else _LABELS[self.backend]


def available_gpu_backends() -> dict[str, list[str]]:
    """GPU backend -> names of its devices, for the backends that have at least one."""
    prefs = _cycles_preferences()
    if prefs is None:
        return {}
    found = {}
    for backend in _compiled_backends(prefs):
        names = [device[0] for device in _device_list(prefs, backend) if device[1] == backend]
        if names:
            found[backend] = names
    return found


def select_cycles_device(scene: bpy.types.Scene, requested: str = "AUTO") -> DeviceChoice:
    """Set ``scene`` (and Cycles' preferences) to render on ``requested``; report what is used.

    Raises ``ValueError`` only for a name that is not in ``DEVICE_NAMES``.
    """
    requested = requested.upper()
    if requested not in DEVICE_NAMES:
        raise ValueError(f"unknown Cycles device {requested!r}; expected one of {', '.join(DEVICE_NAMES)}")
    if requested == "CPU":
        return _use_cpu(scene, requested, "Cycles renders on the CPU")
    prefs = _cycles_preferences()
    candidates = GPU_BACKENDS if requested == "AUTO" else (requested,)
    compiled = _compiled_backends(prefs) if prefs is not None else ()
    for backend in candidates:
        if backend not in compiled:
            continue
        if not any(device[1] == backend for device in _device_list(prefs, backend)):
            continue
        prefs.compute_device_type = backend
        entries = prefs.get_devices_for_type(backend)
        for entry in entries:
            # GPU only: mixing in the CPU slows small renders down and changes the noise.
            entry.use = entry.type == backend
        devices = [entry for entry in entries if entry.type == backend]
        scene.cycles.device = "GPU"
        names = [entry.name for entry in devices]
        return DeviceChoice(
            requested, backend, names, f"Cycles renders on {_LABELS[backend]}: {', '.join(names)}"
        )
    if requested == "AUTO":
        tried = ", ".join(_LABELS[backend] for backend in compiled) or "no GPU backend in this build"
        message = f"No GPU found (tried {tried}); Cycles renders on the CPU"
    elif requested not in compiled:
        message = f"{_LABELS[requested]} is not available in this Blender build; Cycles renders on the CPU"
    else:
        message = f"No {_LABELS[requested]} device found; Cycles renders on the CPU"
    return _use_cpu(scene, requested, message)


def _use_cpu(scene: bpy.types.Scene, requested: str, message: str) -> DeviceChoice:
    scene.cycles.device = "CPU"
    return DeviceChoice(requested, "CPU", [], message)


def _cycles_preferences():
    addon = bpy.context.preferences.addons.get("cycles")
    return addon.preferences if addon is not None else None


def _compiled_backends(prefs) -> tuple[str, ...]:
    try:
        items = {item[0] for item in prefs.get_device_types(bpy.context)}
    except Exception:
        return ()
    return tuple(backend for backend in GPU_BACKENDS if backend in items)


def _device_list(prefs, backend: str) -> list:
    try:
        return list(prefs.get_device_list(backend))
    except Exception:  # a broken driver must not stop a render: treat it as no device
        return []
