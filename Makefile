# siemconn developer commands. Everything runs inside ./.venv.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# two stamps: the service's own dependencies (all `make demo` needs), and those plus the test toolchain
RUNTIME_STAMP := $(VENV)/.installed-runtime
TEST_STAMP := $(VENV)/.installed-test

.PHONY: install install-runtime receiver test test-fast test-packaging test-lowest demo bench fuzz soak \
	soak-memory lint clean lock sbom release

install: $(TEST_STAMP)

install-runtime: $(RUNTIME_STAMP)

# the service's dependencies come from requirements.lock, hash-checked (the versions the image and the
# systemd steps install); siemconn itself is then installed editable without resolving anything
$(RUNTIME_STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q --require-hashes -r requirements.lock
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $(RUNTIME_STAMP)

$(TEST_STAMP): $(RUNTIME_STAMP)
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(TEST_STAMP)

# the real rsyslogd the suite tests against: installed here where possible (root + apt-get), else the
# exact command is printed and make stops; SIEMCONN_SKIP_RSYSLOG=1 skips those tests instead. syslog-ng
# (the CEF/LEEF collector tests) is unpacked into ~/.cache, not installed: it conflicts with rsyslog
receiver:
	$(PY) scripts/ensure_receiver.py
	$(PY) scripts/fetch_syslog_ng.py

test: install receiver
	$(BIN)/python -m pytest -q

# the unit tests (tests/unit/<package>/test_<module>.py), in a minute or two on 2 cores: not the tests of
# a real rsyslogd (marker needs_rsyslog, set by tests/conftest.py), nor the service as a subprocess
# (tests/e2e), the failure scenarios (tests/reliability), the project checks at the top of tests/ or
# tests/deploy; each property test runs a tenth of its examples (SIEMCONN_TEST_FAST, tests/support/examples.py).
# Needs no rsyslogd (the CEF/LEEF collector tests in unit/syslog use it where installed, else skip).
# `make test` runs all of these, with every example
test-fast: install
	SIEMCONN_TEST_FAST=1 $(BIN)/python -m pytest -q -m 'not e2e and not needs_rsyslog and not soak and not packaging' tests/unit

# the container image and the systemd units, really run in podman (root, podman, runc, mmdebstrap)
test-packaging: install receiver
	$(BIN)/python -m pytest -q -m packaging -o addopts='' tests/deploy

# FORMAT=cef (or leef, rfc5424, rfc3164) sets both demo servers' format; DETAILED=1 pulls API v3.5
# detailed detections
demo: install-runtime
	$(BIN)/python -m siemconn.devtools.demo $(if $(FORMAT),--format $(FORMAT)) $(if $(DETAILED),--detailed)

# requirements.lock (the service's dependencies) and requirements-build.lock (the build backend), both
# with every file's sha256, resolved afresh for CPython 3.11 on every platform. pyproject.toml keeps its
# ranges; tests/test_release.py fails when a lock no longer satisfies them
UV_COMPILE = $(BIN)/uv pip compile --quiet --upgrade --generate-hashes --universal --python-version 3.11 \
	--custom-compile-command "make lock"
lock: install
	$(UV_COMPILE) pyproject.toml -o requirements.lock
	$(BIN)/python -c 'import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"], sep="\n")' \
	  | $(UV_COMPILE) - -o requirements-build.lock

# CycloneDX JSON of the distributions installed in a venv (VENV_SBOM, default ./.venv) -> sbom.cdx.json
VENV_SBOM ?= $(VENV)
sbom: install-runtime
	$(VENV_SBOM)/bin/python -m siemconn.devtools.sbom --output $(or $(SBOM),sbom.cdx.json)

# the lowest versions pyproject.toml allows for the service's dependencies (uv's lowest-direct
# resolution; the test tools as usual) in ./.venv-lowest, and the unit tests (not e2e) against them
LOWEST := .venv-lowest
test-lowest: install
	rm -rf $(LOWEST)
	$(BIN)/uv venv --quiet --seed --python $(BIN)/python $(LOWEST)
	$(BIN)/uv pip compile --quiet --resolution lowest-direct --python-version 3.11 pyproject.toml -o $(LOWEST)/lowest.txt
	$(BIN)/uv pip install --quiet --python $(LOWEST)/bin/python --constraint $(LOWEST)/lowest.txt -e '.[test]'
	$(BIN)/uv pip list --python $(LOWEST)/bin/python
	$(LOWEST)/bin/python -m pytest -q -m 'not e2e and not soak and not packaging' -o addopts=''

# dist/: the wheel and the sdist (SOURCE_DATE_EPOCH = the commit's time, so a rebuild of the same commit
# is byte-identical), their SHA256SUMS, and the image siemconn:VERSION (IMAGE=0 skips it; podman or
# docker). The procedure, and what differs between two builds, are in docs/releasing.md
VERSION = $(shell sed -n 's/^__version__ = "\(.*\)"/\1/p' src/siemconn/__init__.py)
REVISION = $(shell git rev-parse HEAD)
EPOCH = $(shell git log -1 --format=%ct)
SOURCE ?= $(shell git config --get remote.origin.url)
ENGINE ?= $(shell command -v podman || command -v docker)
release: install
	test -z "$$(git status --porcelain)" || { echo "release: commit or stash your changes first" >&2; exit 1; }
	rm -rf dist build
	SOURCE_DATE_EPOCH=$(EPOCH) SIEMCONN_REVISION=$(REVISION) $(BIN)/python scripts/release.py --dist dist
	$(if $(filter 0,$(IMAGE)),,$(ENGINE) build $(if $(findstring podman,$(ENGINE)),--format docker) --build-arg VERSION=$(VERSION) --build-arg REVISION=$(REVISION) \
	  --build-arg SOURCE="$(SOURCE)" --build-arg SOURCE_DATE_EPOCH=$(EPOCH) -t siemconn:$(VERSION) .)

bench: install
	$(BIN)/python bench/run.py

# the C encoder and transcoder under AddressSanitizer + UBSan, on mutated pages (gcc; FUZZ_SECONDS=60)
fuzz: install
	$(BIN)/python bench/fuzz_c.py --seconds $(or $(FUZZ_SECONDS),60)

soak: install
	$(BIN)/python -m pytest -q -m soak -o addopts=''

# flat memory over a long run (issue 30): the real service, the fake tenant adding events at a steady rate,
# rsyslogd; four variants (plain, traced, metrics scraped every second, 100 SIGHUP reloads), SOAK_MINUTES
# each. SOAK_PROFILE: compressed (default: polls every second, ~160 events/s), issue (polls every 5 s,
# ~50 events/s: the acceptance run is SOAK_PROFILE=issue SOAK_MINUTES=60 SOAK_WARMUP_MINUTES=10),
# million (~320 events/s: 1,000,000 events in SOAK_MINUTES=55). VARIANT=plain runs one variant
soak-memory: install receiver
	SIEMCONN_SOAK_MINUTES=$(or $(SOAK_MINUTES),15) SIEMCONN_SOAK_PROFILE=$(or $(SOAK_PROFILE),compressed) \
	  $(if $(SOAK_WARMUP_MINUTES),SIEMCONN_SOAK_WARMUP_MINUTES=$(SOAK_WARMUP_MINUTES)) \
	  $(BIN)/python -m pytest -q -s -m soak -o addopts='' tests/reliability/test_memory_soak.py $(if $(VARIANT),-k '$(VARIANT)')

lint: install
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/ruff format --check src tests bench scripts
	$(BIN)/mypy
	$(BIN)/python -m pytest -q -o addopts='' -p no:cacheprovider tests/test_layers.py

clean:
	rm -rf $(VENV) $(LOWEST) build dist src/*.egg-info .pytest_cache .ruff_cache data logs .demo
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
