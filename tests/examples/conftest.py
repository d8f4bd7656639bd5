"""Shared by the example-trainer tests.

``examples/`` is not an installed package, so the repository root goes on sys.path. There
is deliberately no ``tests/examples/__init__.py``: as a package, this folder would be
imported as ``examples`` and shadow the package under test.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@pytest.fixture
def run_main(monkeypatch, tmp_path, request):
    """Run the test module's ``trainer.main()`` under the run protocol with its ``TOY``
    config plus overrides; returns (final metrics, logged records)."""
    from studyc.runtime import sdk

    def run(name: str, **overrides):
        cfg_path = tmp_path / f"{name}.json"
        cfg_path.write_text(json.dumps({**request.module.TOY, **overrides}))
        run_dir = tmp_path / name
        monkeypatch.setenv("STUDYC_CONFIG", str(cfg_path))
        monkeypatch.setenv("STUDYC_RUN_DIR", str(run_dir))
        monkeypatch.delenv("STUDYC_SEED", raising=False)
        final = request.module.trainer.main([])
        return final, sdk.read_metrics(run_dir / "metrics.jsonl")

    return run
