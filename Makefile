# goalledger: `make demo` to see it work, `make test` to check it. POSIX make.
# `make demo PORT=9000` serves elsewhere.
.POSIX:

PYTHON = python3
VENV = .venv
VPY = $(VENV)/bin/python
DATABASE_URL = sqlite:///data/goalledger.db
PORT = 8000

# The demo runs on one machine: its metric sources may call services on loopback, which
# the egress policy refuses by default (see GOALLEDGER_EGRESS_LOOPBACK in the README).
demo: $(VENV)/.installed
	@echo "Starting goalledger on $(DATABASE_URL) (Ctrl-C stops it; 'rm -rf data' starts afresh)."
	GOALLEDGER_EGRESS_LOOPBACK=allow \
	    $(VENV)/bin/goalledger --database-url "$(DATABASE_URL)" serve --demo --port $(PORT)

test: $(VENV)/.installed-test
	$(VPY) -m ruff check .
	$(VPY) -m ruff format --check .
	$(VPY) -m pytest -q

$(VPY):
	$(PYTHON) -m venv $(VENV)

# Installs take the exact versions in constraints.txt (`make constraints` rewrites it).
$(VENV)/.installed: $(VPY) pyproject.toml constraints.txt
	$(VPY) -m pip install --quiet -c constraints.txt -e .
	touch $@

$(VENV)/.installed-test: $(VPY) pyproject.toml constraints.txt
	$(VPY) -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $@

# Pin what the project and its test extra install now (in $(VENV)), e.g. after changing
# pyproject.toml: `make constraints`, run the tests, commit both files.
constraints: $(VENV)/.installed-test
	$(VPY) .ci/freeze_constraints.py > constraints.txt.new
	mv constraints.txt.new constraints.txt

# Leaves data/ alone: it is where the default ledger lives.
clean:
	rm -rf $(VENV) build dist goalledger.egg-info .pytest_cache .ruff_cache .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

.PHONY: demo test clean constraints
