# Two commands: `make run` serves the app, `make test` runs the linter (ruff) and the test suite.
# Both create .venv and install everything on first use (Python 3.11).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PORT ?= 8501
# 127.0.0.1: only this machine can reach the app. `make run HOST=0.0.0.0` shares it on the network;
# a shared app accepts local checkpoint paths only under INSPECTOR_MODEL_ROOTS (dir1:dir2).
HOST ?= 127.0.0.1

.PHONY: install run test test-fast bench clean

$(STAMP): requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	# lava-nc 0.10.0 declares Python <3.11; its dependencies are pinned in requirements.txt and
	# inspector/lava_compat.py patches its Python 3.11 incompatibilities at import time.
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --ignore-requires-python lava-nc==0.10.0
	touch $(STAMP)

install: $(STAMP)

run: install
	$(PY) -m streamlit run app.py --server.address $(HOST) --server.port $(PORT)

test: install
	$(PY) -m ruff check .
	$(PY) -m pytest

# Every bit-exact path, without pages, Lava, Ray, browsers and the published sizes (tests/conftest.py).
test-fast: install
	$(PY) -m ruff check .
	$(PY) -m pytest -m "not slow"

bench: install
	$(PY) -m benchmarks.run
	$(PY) -m benchmarks.page_switch
	$(PY) -m benchmarks.lava
	$(PY) -m benchmarks.scale --big
	$(PY) -m benchmarks.open_370m

clean:
	rm -rf $(VENV) .pytest_cache
