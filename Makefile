# Two commands do all the set-up on a fresh machine: `make test` and `make demo`.
# Each builds the project-local virtual environment (.venv) first if it is missing or stale.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test demo demo-sequence lint bench extension clean

$(STAMP): requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $(STAMP)

lint: $(STAMP)
	$(PY) -m ruff check .

test: lint
	$(PY) -m pytest -q

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

extension: $(STAMP)
	$(PY) scripts/build_extension.py

clean:
	rm -rf dist demo_output demo_sequence .pytest_cache .ruff_cache
