"""What a user meets around the core (issue 13): each test here failed before its fix.

Run by ``make test`` on the bpy modules of Blender 4.2, 4.5 and 5.0.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

from flame_blender.blender import import_head  # noqa: E402
from flame_blender.core import FlameFileError  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
TOLERANCE = 1e-5  # metres
LATIN_1 = "{\"jaw_pose\": [0.1, 0.0, 0.0], \"note\": \"Müller\"}".encode("latin-1")


def run_python(code: str, timeout: float = 120.0) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter of this environment (its bpy), from the repository."""
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, cwd=REPO_ROOT,
        env={**__import__("os").environ, "PYTHONPATH": str(REPO_ROOT)},
    )


# -- bug 2: non-UTF-8 files are a FlameFileError, never a UnicodeDecodeError ---------------


def test_non_utf8_parameter_files_are_reported_not_raised(small_head, tmp_path):
    from flame_blender.core.manifest import read_manifest
    from flame_blender.core.parameters import load_parameter_sequence, load_parameters

    json_file = tmp_path / "latin1.json"
    json_file.write_bytes(LATIN_1)
    lines_file = tmp_path / "latin1.jsonl"
    lines_file.write_bytes(LATIN_1 + b"\n")
    manifest = tmp_path / "index.jsonl"
    manifest.write_bytes(b'{"index": 0, "status": "ok", "id": "\xe9"}\n')
    for read, path in ((load_parameters, json_file), (load_parameter_sequence, lines_file),
                       (read_manifest, manifest)):
        with pytest.raises(FlameFileError, match="UTF-8") as error:
            read(path)
        assert str(path) in str(error.value)
    # Load Parameters: an error report (RuntimeError from bpy.ops), no Python traceback.
    bpy.context.view_layer.objects.active = small_head
    with pytest.raises(RuntimeError) as error:
        bpy.ops.flame.load_parameters(filepath=str(json_file))
    assert "UTF-8" in str(error.value) and "Traceback" not in str(error.value)


def test_render_batch_refuses_a_non_utf8_params_file_with_status_2(flame_dir, tmp_path):
    params = tmp_path / "latin1.jsonl"
    params.write_bytes(LATIN_1 + b"\n")
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "render_batch.py"), "--flame-dir", str(flame_dir),
         "--out", str(tmp_path / "out"), "--params", str(params), "--device", "CPU"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "UTF-8" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out" / "samples").exists()


# -- bug 6 and the README: a bpy-module script that registers the checkout exits cleanly ----


def readme_python_example() -> str:
    """The README's "From Python" code block, exactly as written."""
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"\nFrom Python.*?```python\n(.*?)```", text, re.S)
    assert match, "README: no ```python block after 'From Python'"
    return match.group(1)


def test_readme_from_python_example_runs_as_written(tmp_path):
    """On every bpy version: the example registers the add-on, poses a head, and the process
    exits with status 0 (the 4.2 module used to crash and the 4.5 module to hang at exit)."""
    code = readme_python_example()
    check = (
        "\nimport numpy as _np\n"
        "from flame_blender.core import FlameNumpy as _Reference\n"
        "_got = _np.array([v.co[:] for v in head.evaluated_get("
        "bpy.context.evaluated_depsgraph_get()).to_mesh().vertices])\n"
        "print('ERROR', float(_np.abs(_got - _Reference(flame_dir, n_shape=100, n_expression=50)"
        "(**params.forward_kwargs())).max()))\n"
    )
    # the check needs the head, so it runs before the example's last line (unregister)
    lines = code.rstrip("\n").split("\n")
    assert "unregister()" in lines[-1], "the README example ends by unregistering"
    result = run_python("\n".join(lines[:-1]) + check + lines[-1] + "\n", timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    error = float(result.stdout.split("ERROR")[-1])
    assert error < TOLERANCE


def test_a_script_that_never_unregisters_still_exits_cleanly(flame_dir):
    code = (
        "import bpy, flame_blender\n"
        "flame_blender.register()\n"
        "from flame_blender.blender import import_head\n"
        f"head = import_head(bpy.context, {str(flame_dir)!r}, n_shape=4, n_expression=2)\n"
        "head.flame.jaw_pose = (0.2, 0.0, 0.0)\n"
        "from flame_blender.blender import handlers\n"
        "print('TIMER', bpy.app.timers.is_registered(handlers._update_heads_after_enable))\n"
    )
    result = run_python(code, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "TIMER False" in result.stdout  # no timer that no event loop would ever fire


# -- bug 5: one unreadable landmark file does not block the other landmark sets ------------


def test_a_truncated_landmark_file_leaves_the_other_sets_working(blender_scene, flame_dir, tmp_path):
    import shutil

    from flame_blender.blender import landmark_empties
    from flame_blender.blender.render.batch import BatchRenderer, BatchSettings
    from flame_blender.core import (
        FlameNumpy,
        find_flame_model_file,
        load_flame,
        load_landmark_embeddings,
    )

    folder = tmp_path / "flame"
    folder.mkdir()
    model_file = Path(find_flame_model_file(flame_dir))
    for name in (model_file.name, "mediapipe_landmark_embedding.npz"):
        shutil.copy2(flame_dir / name, folder / name)
    intact = (flame_dir / "flame_dynamic_embedding.npy").read_bytes()
    (folder / "flame_dynamic_embedding.npy").write_bytes(intact[: len(intact) // 3])

    found = load_landmark_embeddings(folder)
    assert "mediapipe" in found and "dynamic_contour" not in found
    assert "flame_dynamic_embedding.npy" in found.problems
    with pytest.raises(FlameFileError):
        load_landmark_embeddings(folder, strict=True)

    # FlameNumpy: MediaPipe points at their barycentric places on the forward pass's vertices
    # (the embedding read from the intact folder, combined here by hand).
    output = FlameNumpy(folder, n_shape=10, n_expression=5).run(jaw_pose=np.array([0.2, 0.0, 0.0]))
    embedding = load_landmark_embeddings(flame_dir)["mediapipe"]
    faces = load_flame(flame_dir)["f"].astype(np.int64)
    corners = np.asarray(output.vertices)[faces[embedding.face_indices]]
    expected = np.einsum("lk,lkd->ld", embedding.barycentric, corners)
    assert np.abs(np.asarray(output.landmarks["mediapipe"]) - expected).max() < 1e-9

    # The sidebar's MediaPipe empties, and the batch renderer with --landmarks mediapipe.
    head = import_head(blender_scene, folder, n_shape=4, n_expression=2)
    assert len(landmark_empties.add_landmark_empties(head, "mediapipe")) == 105
    with pytest.raises(FlameFileError, match="flame_dynamic_embedding"):  # says why it is missing
        landmark_empties.add_landmark_empties(head, "ibug68")
    renderer = BatchRenderer(BatchSettings(out=tmp_path / "out", flame_dir=folder, count=1,
                                           landmark_sets=("mediapipe",), device="CPU"))
    renderer.prepare()  # (it builds its own scene)
    assert renderer.landmark_names == {"mediapipe": "mediapipe"}
