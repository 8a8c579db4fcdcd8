# goalledger: `make demo` to see it work, `make test` to check it. POSIX make.
# `make demo PORT=9000` serves elsewhere.
.POSIX:

PYTHON = python3
VENV = .venv
VPY = $(VENV)/bin/python
DATABASE_URL = sqlite:///data/goalledger.db
PORT = 8000

demo: $(VENV)/.installed
	@echo "Starting goalledger on $(DATABASE_URL) (Ctrl-C stops it; 'rm -rf data' starts afresh)."
	$(VENV)/bin/goalledger --database-url "$(DATABASE_URL)" serve --demo --port $(PORT)

test: $(VENV)/.installed-test
	$(VPY) -m ruff check .
	$(VPY) -m ruff format --check .
	$(VPY) -m pytest -q

$(VPY):
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(VPY) pyproject.toml
	$(VPY) -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: $(VPY) pyproject.toml
	$(VPY) -m pip install --quiet -e '.[test]'
	touch $@

# Leaves data/ alone: it is where the default ledger lives.
clean:
	rm -rf $(VENV) build dist goalledger.egg-info .pytest_cache .ruff_cache .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

.PHONY: demo test clean
