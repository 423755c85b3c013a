# Two commands do all the set-up on a fresh machine: `make test` and `make demo`.
# Each builds the project-local virtual environments first if they are missing or stale.
#
# Three environments, one per supported Blender (the bpy module of each, with the numpy that
# Blender bundles):
#   .venv        bpy 5.0.1, numpy 1.26.4, torch, ruff, smplx: everything (the default)
#   .venv-bpy45  bpy 4.5.15 LTS, numpy 1.26.4, no torch (a stock Blender has none)
#   .venv-bpy42  bpy 4.2.23 LTS, numpy 1.24.3, no torch
# `make test` runs the whole suite on .venv and the Blender-facing tests on the other two.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
VENV45 := .venv-bpy45
VENV42 := .venv-bpy42
PIP_INSTALL := -m pip install --quiet --disable-pip-version-check

.PHONY: test test-5.0 test-4.5 test-4.2 venvs demo demo-sequence lint bench extension clean

$(STAMP): requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) $(PIP_INSTALL) -r requirements-dev.txt
	touch $(STAMP)

$(VENV45)/.installed: requirements-bpy45.txt
	test -x $(VENV45)/bin/python || $(PYTHON) -m venv $(VENV45)
	$(VENV45)/bin/python $(PIP_INSTALL) -r requirements-bpy45.txt
	touch $@

$(VENV42)/.installed: requirements-bpy42.txt
	test -x $(VENV42)/bin/python || $(PYTHON) -m venv $(VENV42)
	$(VENV42)/bin/python $(PIP_INSTALL) -r requirements-bpy42.txt
	touch $@

venvs: $(STAMP) $(VENV45)/.installed $(VENV42)/.installed

lint: $(STAMP)
	$(PY) -m ruff check .

test: lint test-5.0 test-4.5 test-4.2

test-5.0: $(STAMP)
	$(PY) -m pytest -q

test-4.5: $(VENV45)/.installed
	$(VENV45)/bin/python -m pytest -q --blender-only

test-4.2: $(VENV42)/.installed
	$(VENV42)/bin/python -m pytest -q --blender-only

# A fresh folder each time: a rerun into an existing one resumes only if every setting (the
# synthetic model's version included) is unchanged, and refuses otherwise.
demo: $(STAMP)
	rm -rf demo_output
	$(PY) scripts/render_batch.py --out demo_output --num 8 --resolution 256 256 --samples 16 --contact-sheet demo_output/contact_sheet.png

# A synthetic tracked sequence in VHAP's export layout, rendered frame by frame with its camera.
demo-sequence: $(STAMP)
	rm -rf demo_sequence
	$(PY) scripts/make_synthetic_sequence.py demo_sequence/tracked --frames 24
	$(PY) scripts/render_batch.py --sequence demo_sequence/tracked --camera tracked --frames 0:7 --out demo_sequence/render --resolution 256 256 --samples 16 --contact-sheet demo_sequence/contact_sheet.png

bench: $(STAMP)
	$(PY) benchmarks/forward.py
	$(PY) benchmarks/blender_update.py
	$(PY) benchmarks/render.py
	$(PY) benchmarks/sequence.py

# Needs only Python 3.11 (no bpy): scripts/build_extension.py checks the manifest itself.
extension:
	$(PYTHON) scripts/build_extension.py

clean:
	rm -rf dist demo_output demo_sequence .pytest_cache .ruff_cache
