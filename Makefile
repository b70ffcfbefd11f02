# nbo - developer commands. `make demo` and `make test` work on a fresh machine with Python 3.11.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO_DIR ?= demo

.PHONY: install demo test bench lock clean mutation

install: $(STAMP)

# Re-runs only when the dependency list or the lock changes: idempotent.
$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c "import sys; sys.exit(sys.version_info < (3, 11))" 2>/dev/null || { echo "need Python >= 3.11 (set PYTHON=...)"; exit 1; }
	@echo "== install 1/4: a virtual environment in $(VENV)"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "== install 2/4: pip, setuptools, wheel"
	@$(BIN)/python -m pip install --quiet --upgrade pip setuptools wheel 2>&1 | grep -v "is ignored" || true
	@echo "== install 3/4: nbo and $$(grep -c '==' constraints.txt) pinned packages (about 2 minutes and 2 GB on a fresh machine; one line per package)"
	@PYTHONUNBUFFERED=1 $(BIN)/python -m pip install -c constraints.txt -e '.[dev]' 2>&1 \
		| grep --line-buffered -E "^(Collecting|Installing collected|Successfully installed|ERROR)" | cut -c1-100 || true
	@$(BIN)/python -c "import nbo, simulator, features, models, training, serving, evaluation, cli, lightgbm, mlflow, bentoml" \
		|| { echo "install failed"; exit 1; }
	@echo "== install 4/4: system packages the tests use (redis-server, chromium), when missing"
	@command -v redis-server >/dev/null 2>&1 || { \
		echo "redis-server not found: installing it from the system packages (tests that need it skip otherwise)"; \
		( (apt-get update -qq && apt-get install -y -qq redis-server) >/dev/null 2>&1 || \
		  (sudo -n apt-get update -qq && sudo -n apt-get install -y -qq redis-server) >/dev/null 2>&1 ) || \
		echo "could not install redis-server; Redis tests will be skipped with a reason"; }
	@test -x /usr/bin/chromium || { \
		echo "chromium not found: installing it from the system packages (the console's browser tests skip otherwise)"; \
		( (apt-get update -qq && apt-get install -y -qq chromium) >/dev/null 2>&1 || \
		  (sudo -n apt-get update -qq && sudo -n apt-get install -y -qq chromium) >/dev/null 2>&1 ) || \
		echo "could not install chromium; the console's browser tests will be skipped with a reason"; }
	@touch $(STAMP)

demo: install
	$(BIN)/nbo demo --dir $(DEMO_DIR)

# Two worker processes (pytest-xdist), whole files per worker so a module's fixtures are built
# once; each worker builds its own session worlds. TEST_WORKERS=0 runs the suite in one process.
TEST_WORKERS ?= 2
test: install
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile

bench: install
	$(BIN)/python -m benchmarks

# Mutation testing of the cap code (mutmut + hand-written Lua mutants; ~15 min, not in CI).
# Score and survivors: docs/reliability.md §9.
mutation: install
	$(BIN)/python tests/serving/mutation/mutate.py --out .scratch/mutation/report.json

# Regenerate the pinned versions from the current environment (after a deliberate upgrade).
lock:
	$(BIN)/python -m pip freeze --exclude-editable | grep -v "^-e" > constraints.txt

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache
