# siemconn developer commands. Everything runs inside ./.venv.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# two stamps: the service's own dependencies (all `make demo` needs), and those plus the test toolchain
RUNTIME_STAMP := $(VENV)/.installed-runtime
TEST_STAMP := $(VENV)/.installed-test

.PHONY: install install-runtime receiver test test-packaging demo bench fuzz soak soak-memory lint clean

install: $(TEST_STAMP)

install-runtime: $(RUNTIME_STAMP)

$(RUNTIME_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e .
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

# the container image and the systemd units, really run in podman (root, podman, runc, mmdebstrap)
test-packaging: install receiver
	$(BIN)/python -m pytest -q -m packaging -o addopts='' tests/deploy

# FORMAT=cef (or leef, rfc5424, rfc3164) sets both demo servers' format; DETAILED=1 pulls API v3.5
# detailed detections
demo: install-runtime
	$(BIN)/python -m siemconn.devtools.demo $(if $(FORMAT),--format $(FORMAT)) $(if $(DETAILED),--detailed)

bench: install
	$(BIN)/python bench/run.py

# the C encoder and transcoder under AddressSanitizer + UBSan, on mutated pages (gcc; FUZZ_SECONDS=60)
fuzz: install
	$(BIN)/python bench/fuzz_c.py --seconds $(or $(FUZZ_SECONDS),60)

soak: install
	$(BIN)/python -m pytest -q -m soak -o addopts=''

# flat memory over a long run (issue 30): the real service, the fake tenant adding ~160 events/s, rsyslogd;
# four variants (plain, traced, metrics scraped every second, 100 SIGHUP reloads), SOAK_MINUTES each
soak-memory: install receiver
	SIEMCONN_SOAK_MINUTES=$(or $(SOAK_MINUTES),15) $(BIN)/python -m pytest -q -s -m soak -o addopts='' tests/test_memory_soak.py

lint: install
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/ruff format --check src tests bench scripts
	$(BIN)/mypy

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache data logs .demo
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
