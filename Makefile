# The README's two commands. Each sets itself up on a fresh machine first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip install --quiet --disable-pip-version-check
CORE := $(VENV)/.core-ready
DEV := $(VENV)/.dev-ready
# Sources are compiled first (only what changed): where PYTHONDONTWRITEBYTECODE is set,
# every process a study or a test starts would compile studyc again.
COMPILE := $(BIN)/python -m compileall -q studyc examples

.PHONY: run test clean

run: $(CORE)
	$(COMPILE)
	$(BIN)/studyc run studies/burgers_phase3_ablation.yaml --profile cpu

# The suite runs on every core (pytest-xdist; slow tests first, see tests/conftest.py).
test: $(DEV)
	$(COMPILE)
	$(BIN)/python -m pytest -n auto --dist worksteal

# torch==2.13.0 resolves to the CPU build on CPU-only machines (no multi-GB CUDA wheels).
$(CORE): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) "torch==2.13.0"
	$(PIP) -e .
	touch $@

# The test suite also needs the extras it checks against for real.
$(DEV): $(CORE)
	$(PIP) -e ".[dev,cloud,wandb]"
	touch $@

clean:
	rm -rf $(VENV) .studyc reports
