"""``core/io/torch_zip.load_torch_zip`` against torch itself: files written by ``torch.save``
read back bit for bit as ``torch.load`` reads them (tensors as numpy arrays), without torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from file_errors import assert_file_error

from flame_blender.core.io.torch_zip import load_torch_zip

torch = pytest.importorskip("torch")


def _as_numpy(value):
    """What torch.load gives, with tensors turned into numpy arrays (the expected result)."""
    if isinstance(value, torch.Tensor):
        return value.numpy()
    if isinstance(value, dict):
        return {k: _as_numpy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_as_numpy(v) for v in value)
    return value


def _assert_same(got, expected, where="") -> None:
    if isinstance(expected, np.ndarray):
        assert isinstance(got, np.ndarray), where
        assert got.dtype == expected.dtype and got.shape == expected.shape, where
        assert got.tobytes() == np.ascontiguousarray(expected).tobytes(), where
        assert got.flags.writeable, where
    elif isinstance(expected, dict):
        assert isinstance(got, dict) and list(got) == list(expected), where
        for key in expected:
            _assert_same(got[key], expected[key], f"{where}.{key}")
    elif isinstance(expected, (list, tuple)):
        assert type(got) is type(expected) and len(got) == len(expected), where
        for i, (a, b) in enumerate(zip(got, expected, strict=True)):
            _assert_same(a, b, f"{where}[{i}]")
    else:
        assert got == expected and type(got) is type(expected), where


def test_torch_save_files_read_as_torch_load_reads_them(tmp_path: Path) -> None:
    generator = torch.Generator().manual_seed(0)
    base = torch.randn(4, 6, generator=generator)
    value = {
        "float32": torch.randn(2, 3, generator=generator),
        "transposed": base.t(),  # non-contiguous: strides (1, 6)
        "view_with_offset": base[1:, ::2],  # shares base's storage, offset 6
        "base": base,
        "float64": torch.randn(3, generator=generator, dtype=torch.float64),
        "float16": torch.randn(5, generator=generator).half(),
        "int64": torch.arange(-3, 4),
        "int32": torch.arange(6, dtype=torch.int32).reshape(2, 3),
        "int16": torch.tensor([-2, 7], dtype=torch.int16),
        "int8": torch.tensor([-1, 1], dtype=torch.int8),
        "uint8": torch.tensor([0, 255], dtype=torch.uint8),
        "bool": torch.tensor([True, False, True]),
        "scalar": torch.tensor(2.5),
        "empty": torch.zeros(0, 3),
        "numpy": {"exp": np.arange(6, dtype=np.float32).reshape(1, 6), "id": np.array([3, 1])},
        "nested": [torch.ones(2), (torch.zeros(1, dtype=torch.int64), "name", 7, 1.5, None)],
        "frame_id": "00012",
    }
    path = tmp_path / "everything.pt"
    torch.save(value, path)
    _assert_same(load_torch_zip(path), _as_numpy(torch.load(path, weights_only=False)))


def test_reading_does_not_import_torch(tmp_path: Path) -> None:
    path = tmp_path / "codes.pt"
    torch.save({"exp": torch.arange(4.0), "pose": torch.zeros(1, 6).t()}, path)
    script = (
        "import builtins, sys\n"
        "real = builtins.__import__\n"
        "def guard(name, *a, **k):\n"
        "    if name == 'torch' or name.startswith('torch.'): raise ImportError('torch blocked')\n"
        "    return real(name, *a, **k)\n"
        "builtins.__import__ = guard\n"
        "from flame_blender.core.io.torch_zip import load_torch_zip\n"
        f"value = load_torch_zip({str(path)!r})\n"
        "assert 'torch' not in sys.modules\n"
        "print(value['exp'].tolist(), value['pose'].shape)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=Path(__file__).parent.parent, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[0.0, 1.0, 2.0, 3.0] (6, 1)"


def test_damaged_torch_files_raise_flame_file_error(tmp_path: Path) -> None:
    good = tmp_path / "codes.pt"
    torch.save({"shape": torch.zeros(1, 100)}, good)
    data = good.read_bytes()
    for cut in (0, 10, len(data) // 2, len(data) - 10):
        damaged = tmp_path / f"cut{cut}.pt"
        damaged.write_bytes(data[:cut])
        assert_file_error(lambda p=damaged: load_torch_zip(p), damaged, [])
    assert_file_error(lambda: load_torch_zip(tmp_path / "missing.pt"), tmp_path / "missing.pt",
                      ["no such file"])  # fmt: skip
