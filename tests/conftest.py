"""Shared fixtures: write small studies to a temp dir and run studyc on them."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes a minute or more (still runs in CI, first)")


def pytest_collection_modifyitems(config, items):
    """Slow tests first: run on several workers (pytest-xdist), they then go beside the
    others instead of last, alone."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture
def write_study(tmp_path: Path):
    """Write YAML text (dedented) to a file and return its path."""

    def write(text: str, name: str = "study.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).lstrip())
        return path

    return write


@pytest.fixture
def store_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / ".studyc"
    monkeypatch.setenv("STUDYC_HOME", str(home))
    return home


TOY_TRAINER = """\
import math, sys, studyc
c = studyc.config()
for i in range(c.get("steps", 4)):
    studyc.log(step=i, loss=1.0 / (i + 1), nrmse=c["base"] + 0.001 * c["seed"] + 0.01 / (i + 1))
"""


@pytest.fixture
def toy_trainer(tmp_path: Path) -> Path:
    """A tiny real training-like process that follows the run protocol."""
    path = tmp_path / "toy_train.py"
    path.write_text(TOY_TRAINER)
    return path
