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

from flame_blender.blender import get_parameters, import_head  # noqa: E402
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
    from flame_blender.core.model.parameters import load_parameter_sequence, load_parameters
    from flame_blender.core.render.manifest import read_manifest

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


def head_panel_texts() -> str:
    """Every text the FLAME Head panel draws now (into a recording layout), joined."""
    import ui_recorder

    from flame_blender.blender.panel import FLAME_PT_head

    recording = ui_recorder.draw("FLAME_PT_head", FLAME_PT_head.draw, FLAME_PT_head, bpy.context)
    assert not recording.errors, recording.errors
    return "\n".join(recording.texts())


def activate(obj) -> None:
    bpy.context.view_layer.objects.active = obj
    obj.select_set(True)


# -- bug 3: a muted coefficient key counts as zero, like Blender's mix; the rest is refused ---


def test_muting_a_coefficient_key_keeps_the_head_exact(small_head, flame_reference, evaluated_vertices):
    head = small_head
    blocks = head.data.shape_keys.key_blocks
    blocks["expr_001"].value = 2.0
    blocks["shape_002"].value = 1.5
    head.flame.global_pose = (0.1, 0.4, 0.0)
    head.flame.jaw_pose = (0.3, 0.0, 0.05)
    blocks["expr_001"].mute = True
    bpy.context.view_layer.update()
    expected_params = get_parameters(head)
    assert expected_params.expression[1] == 2.0  # the value stays; Blender ignores it
    expected_params.expression[1] = 0.0
    error = np.abs(evaluated_vertices(head) - flame_reference(expected_params)).max()
    assert error < TOLERANCE
    blocks["expr_001"].mute = False
    bpy.context.view_layer.update()
    assert np.abs(evaluated_vertices(head) - flame_reference(get_parameters(head))).max() < TOLERANCE


def test_vertex_groups_and_other_relative_keys_are_refused_visibly(small_head):
    activate(small_head)
    assert "not exact" not in head_panel_texts()
    blocks = small_head.data.shape_keys.key_blocks
    blocks["shape_001"].vertex_group = "lips"
    blocks["expr_000"].relative_key = blocks["shape_000"]
    texts = head_panel_texts()
    assert "shape_001 use a vertex group" in texts
    assert "expr_000 are relative to a key other than Basis" in texts


# -- bug 4: linked duplicates are detected, and one click gives each head its own mesh -------


def test_linked_duplicates_are_detected_and_made_single_user(small_head, flame_reference, evaluated_vertices):
    head = small_head
    duplicate = head.copy()  # what Alt+D makes: a new object sharing the mesh
    bpy.context.scene.collection.objects.link(duplicate)
    assert duplicate.data == head.data
    activate(duplicate)
    assert "Shares its mesh with FLAME" in head_panel_texts()
    assert bpy.ops.flame.make_single_user() == {"FINISHED"}
    assert duplicate.data != head.data and duplicate.data.shape_keys != head.data.shape_keys
    head.flame.jaw_pose = (0.3, 0.0, 0.0)
    duplicate.flame.jaw_pose = (-0.1, 0.2, 0.0)
    duplicate.data.shape_keys.key_blocks["expr_003"].value = -1.5
    bpy.context.view_layer.update()
    for obj in (head, duplicate):
        assert np.abs(evaluated_vertices(obj) - flame_reference(get_parameters(obj))).max() < TOLERANCE
    assert "Shares its mesh" not in head_panel_texts()


# -- bug 7: single-head products run with numpy's BLAS on one thread -------------------------


def openblas_threads_reader():
    """numpy's OpenBLAS ``get_num_threads``, found independently of the package: through the
    libraries this process has mapped (Linux)."""
    import ctypes

    maps = Path("/proc/self/maps")
    if not maps.exists():
        pytest.skip("needs /proc/self/maps (Linux)")
    paths = sorted({line.split()[-1] for line in maps.read_text().splitlines()
                    if "openblas" in line.lower() and line.split()[-1].startswith("/")})
    for path in paths:
        library = ctypes.CDLL(path)
        for name in ("openblas_get_num_threads64_", "openblas_get_num_threads"):
            function = getattr(library, name, None)
            if function is not None:
                return function
    pytest.skip("numpy here has no OpenBLAS")


def test_single_head_updates_keep_blas_on_one_thread(small_head, monkeypatch):
    from flame_blender.blender import runtime

    read_threads = openblas_threads_reader()
    if read_threads() < 2:
        pytest.skip("OpenBLAS runs one thread here anyway")
    backend = runtime.get_backend(small_head.flame.model_path, small_head.flame.n_shape,
                                  small_head.flame.n_expression)
    seen = []
    for method in ("posed", "shaped"):
        original = getattr(backend, method)

        def spy(*args, _original=original, **kwargs):
            seen.append(read_threads())
            return _original(*args, **kwargs)

        monkeypatch.setattr(backend, method, spy)
    before = read_threads()
    small_head.data.shape_keys.key_blocks["shape_000"].value = 0.5
    small_head.flame.jaw_pose = (0.2, 0.0, 0.0)
    assert seen and set(seen) == {1}
    assert read_threads() == before  # and the user's own numpy work gets its threads back


# -- bug 9 and the backend line: the panel says what went wrong, for the active head ---------


def test_update_failures_reach_the_panel_and_the_status_bar(small_head, flame_reference, evaluated_vertices):
    activate(small_head)
    small_head.flame.jaw_pose = (float("nan"), 0.0, 0.0)
    texts = head_panel_texts()
    assert "Last update failed" in texts and "jaw_pose" in texts
    # What the status bar shows comes from this operator (handlers cannot report themselves).
    assert bpy.ops.flame.report_problem(message="test message") == {"FINISHED"}
    small_head.flame.jaw_pose = (0.1, 0.0, 0.0)
    assert "Last update failed" not in head_panel_texts()
    bpy.context.view_layer.update()
    assert np.abs(evaluated_vertices(small_head) - flame_reference(get_parameters(small_head))).max() < TOLERANCE


def test_the_panel_names_the_backend_of_the_active_head(blender_scene, flame_dir, tmp_path):
    import shutil

    from flame_blender.core import find_flame_model_file

    model_file = Path(find_flame_model_file(flame_dir))
    folder = tmp_path / "copy"
    folder.mkdir()
    shutil.copy2(model_file, folder / model_file.name)
    broken = import_head(bpy.context, folder, n_shape=3, n_expression=2, name="Broken")
    (folder / model_file.name).unlink()
    from flame_blender.blender import head as blender_head
    from flame_blender.blender import runtime

    runtime.clear()  # as after reopening the file: the model file is read again, and is gone
    blender_head.forget_caches()
    blender_head.update_all_heads(force=True)
    good = import_head(bpy.context, flame_dir, n_shape=3, n_expression=2, name="Good")
    name = runtime.get_backend(good.flame.model_path, 3, 2).name
    activate(good)
    assert f"Backend: {name}" in head_panel_texts()
    activate(broken)  # the last backend used is the good head's: the panel must not say so
    texts = head_panel_texts()
    assert "Backend: none (model not loaded)" in texts and f"Backend: {name}" not in texts


# -- bug 8: the built-in model lives in the extension's user folder, keyed by a stable version


def test_builtin_model_is_kept_where_a_saved_file_finds_it_again(blender_scene, tmp_path):
    import os

    from flame_blender.core.synthetic import SYNTHETIC_VERSION

    assert bpy.ops.flame.import_head(use_builtin=True, n_shape=4, n_expression=2) == {"FINISHED"}
    head = bpy.context.active_object
    model = Path(head.flame.model_path)
    user_resources = Path(os.environ["BLENDER_USER_RESOURCES"]).resolve()
    assert user_resources in model.parents  # Blender's user folder, not a cache
    assert model.parent.name == f"synthetic-v{SYNTHETIC_VERSION}-seed0"  # no source digest
    saved = tmp_path / "head.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(saved))
    # Another session after an update: core's cache is somewhere else (or cleaned).
    code = (
        "import bpy, flame_blender\n"
        "flame_blender.register()\n"
        f"bpy.ops.wm.open_mainfile(filepath={str(saved)!r})\n"
        "from flame_blender.blender import runtime\n"
        "head = bpy.data.objects['FLAME']\n"
        "print('ERROR', runtime.model_error(head.flame.model_path))\n"
        "flame_blender.unregister()\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "FLAME_BLENDER_CACHE": str(tmp_path / "cleaned")}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=180, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ERROR None" in result.stdout, result.stdout + result.stderr


# -- the import dialog: the count and what it costs in the .blend; dropping a .pkl imports it --


def test_import_dialog_states_the_shape_key_size_truthfully(blender_scene, flame_dir, tmp_path):
    from flame_blender.blender.operators import shape_key_size_note

    assert shape_key_size_note(300, 100) == "402 shape keys, about 24 MB in the .blend"
    empty = tmp_path / "empty.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(empty), compress=False)
    import_head(bpy.context, flame_dir, n_shape=100, n_expression=50)
    with_head = tmp_path / "head.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(with_head), compress=False)
    grown_mb = (with_head.stat().st_size - empty.stat().st_size) / 1e6
    stated_mb = float(re.search(r"about (\d+) MB", shape_key_size_note(100, 50)).group(1))
    assert abs(grown_mb - stated_mb) <= 0.15 * grown_mb + 1.0, (grown_mb, stated_mb)


def test_dropping_a_pkl_on_the_viewport_imports_it(blender_addon):
    handler = bpy.types.FileHandler.bl_rna_get_subclass_py("FLAME_FH_import_head")
    assert handler is not None and handler.bl_import_operator == "flame.import_head"
    assert ".pkl" in handler.bl_file_extensions.split(";")
    # Dropping runs the operator with filepath set: the dialog confirms counts, then imports.
    rna = bpy.ops.flame.import_head.get_rna_type()
    assert {"filepath", "use_builtin", "n_shape", "n_expression"} <= set(rna.properties.keys())


# -- importing torch does not freeze registration or the first update ------------------------


def test_torch_is_imported_in_the_background_at_registration():
    pytest.importorskip("torch")  # the bpy 4.x environments have none, like a stock Blender
    code = (
        "import sys, time, bpy, flame_blender\n"
        "start = time.perf_counter()\n"
        "flame_blender.register()\n"
        "from flame_blender.blender import runtime\n"
        "runtime.start_torch_preload()  # what register() does in a running Blender (not headless)\n"
        "registered = time.perf_counter() - start\n"
        "import threading\n"
        "names = [t.name for t in threading.enumerate()]\n"
        "runtime.wait_for_torch_preload(120)\n"
        "print('THREAD', 'flame-torch-import' in names, 'TORCH', 'torch' in sys.modules)\n"
        "print('REGISTERED', registered)\n"
        "flame_blender.unregister()\n"
    )
    result = run_python(code)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "THREAD True TORCH True" in result.stdout
    assert float(result.stdout.split("REGISTERED")[-1]) < 0.5  # not waiting for the import
