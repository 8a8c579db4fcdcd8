# goalledger: `make demo` to see it work, `make test` to check it. POSIX make.
.POSIX:

PYTHON = python3
VENV = .venv
VPY = $(VENV)/bin/python
DATABASE_URL = sqlite:///data/goalledger.db
# `make demo FORCE=1` loads the demo into a ledger that already holds events.
FORCE =

demo: $(VENV)/.installed
	@force=; if [ -n "$(FORCE)" ]; then force=--force; fi; \
	if $(VENV)/bin/goalledger --database-url "$(DATABASE_URL)" demo $$force; then \
		echo; \
		echo "The ledger above is $(DATABASE_URL); try: $(VENV)/bin/goalledger --help"; \
	else \
		echo "make demo: failed (make demo FORCE=1 adds another copy; rm -rf data starts afresh)" >&2; \
		exit 1; \
	fi

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
