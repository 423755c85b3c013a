"""Hostile files: each read in its own process under an address-space limit and a timeout.

For every file of :mod:`hostile_files` the child (``hostile_runner.py``) must exit normally with
``FlameFileError`` within 2 s of reading and 300 MB peak RSS, nothing may appear on disk (the
child's working and temporary folders and the file's own folder stay as they were), and no
module attribute of flame_blender or numpy may change.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hostile_files import HOSTILE as READER_FILES
from hostile_sequence_files import HOSTILE_SEQUENCE

RUNNER = Path(__file__).with_name("hostile_runner.py")
MAX_SECONDS = 2.0
MAX_PEAK_MB = 300.0
HOSTILE = {
    group: {**READER_FILES.get(group, {}), **HOSTILE_SEQUENCE.get(group, {})}
    for group in {**READER_FILES, **HOSTILE_SEQUENCE}
}
CASES = [(group, name) for group, builders in HOSTILE.items() for name in builders]


def _listing(*folders: Path) -> set[str]:
    return {str(p) for folder in folders for p in folder.rglob("*")}


def run_reader(reader: str, files: list[Path], work: Path, timeout: float = 60.0) -> list[dict]:
    """Run ``hostile_runner.py reader files...`` in ``work`` (cwd and TMPDIR); its JSON lines."""
    home, tmp = work / "cwd", work / "tmp"
    home.mkdir(exist_ok=True)
    tmp.mkdir(exist_ok=True)
    env = {**os.environ, "TMPDIR": str(tmp), "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run(
        [sys.executable, str(RUNNER), reader, *map(str, files)],
        cwd=home, env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


@pytest.mark.parametrize("group, name", CASES, ids=[f"{g}:{n}" for g, n in CASES])
def test_hostile_file_is_refused_safely(tmp_path: Path, flame_dir: Path, group: str, name: str) -> None:
    reader, file_name, data = HOSTILE[group][name](flame_dir)
    folder = tmp_path / "files"
    folder.mkdir()
    path = folder / file_name
    path.write_bytes(data)
    work = tmp_path / "work"
    work.mkdir()
    before = _listing(folder, work)

    (report,) = run_reader(reader, [path], work)

    assert report["error"] == "FlameFileError" or report["file_error"], report
    assert str(path) in report["message"], report
    assert report["seconds"] <= MAX_SECONDS, report
    assert report["peak_mb"] <= MAX_PEAK_MB, report
    assert report["changed"] == [], report
    after = _listing(folder, work) - {str(work / "cwd"), str(work / "tmp")}
    assert after == before - {str(work / "cwd"), str(work / "tmp")}, after ^ before


def test_runner_sees_a_state_change(tmp_path: Path) -> None:
    """The state check can fail: a plain pickle BUILD on a function is reported."""
    script = tmp_path / "tamper.py"
    script.write_text(
        "import sys, runpy\n"
        f"sys.argv = [{str(RUNNER)!r}, 'pickle', {str(tmp_path / 'x.pkl')!r}]\n"
        "import pickle\n"
        "from flame_blender.core.io import safe_pickle, plain_arrays\n"
        "def plain(path):\n"
        "    return pickle.loads(open(path, 'rb').read())\n"
        "safe_pickle.load_pickle = plain\n"
        f"runpy.run_path({str(RUNNER)!r}, run_name='__main__')\n"
    )
    target = "flame_blender.core.io.plain_arrays\nfits_int64\n"
    state = b"(N}X\x0c\x00\x00\x00__qualname__X\x05\x00\x00\x00ownedstb."
    (tmp_path / "x.pkl").write_bytes(b"\x80\x02c" + target.encode() + state)
    env = {**os.environ, "PYTHONPATH": f"{RUNNER.parent.parent}{os.pathsep}{RUNNER.parent}"}
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          env=env, timeout=60)  # fmt: skip
    (report,) = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert report["error"] is None
    # core.plain_arrays is an alias of core.io.plain_arrays: the state lists the real name
    assert "flame_blender.core.io.plain_arrays.fits_int64" in report["changed"]
