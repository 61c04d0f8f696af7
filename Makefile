# siemconn developer commands. Everything runs inside ./.venv.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test test-packaging demo bench soak lint clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

test: install
	$(BIN)/python -m pytest -q

# the container image and the systemd units, really run in podman (root, podman, runc, mmdebstrap)
test-packaging: install
	$(BIN)/python -m pytest -q -m packaging -o addopts='' tests/deploy

demo: install
	$(BIN)/python -m siemconn.devtools.demo

bench: install
	$(BIN)/python bench/run.py

soak: install
	$(BIN)/python -m pytest -q -m soak -o addopts=''

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache data logs .demo
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
