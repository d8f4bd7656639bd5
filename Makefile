# The README's two commands. Each sets itself up on a fresh machine first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
READY := $(VENV)/.ready

.PHONY: run test clean

run: $(READY)
	$(BIN)/studyc run studies/burgers_phase3_ablation.yaml --profile cpu

test: $(READY)
	$(BIN)/python -m pytest

# torch==2.13.0 resolves to the CPU build on CPU-only machines (no multi-GB CUDA wheels).
$(READY): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "torch==2.13.0"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	touch $(READY)

clean:
	rm -rf $(VENV) .studyc reports
