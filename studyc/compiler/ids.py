"""Content-addressed run ids: a hash of what determines a run's result."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def run_id(command: str, config: dict[str, Any], seed: int, env: dict[str, str], code_version: str | None,
           source: str | None = None) -> str:
    """Same command, resolved config, seed, env and code version (and, for an evaluation,
    the run it evaluates): same id, on any machine."""
    fields = {"command": command, "config": config, "seed": seed, "env": env, "code": code_version}
    if source is not None:
        fields["source"] = source
    payload = canonical(fields)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def code_version(workdir: str) -> str:
    """A hash of the content of the workdir's code (see ``studyc.compiler.code``): editing
    a trainer, tracked or not, in git or not, changes every run id."""
    from studyc.compiler.code import code_files

    return code_files(workdir).version


def study_root(path: Path, workdir: str | None) -> Path:
    """The directory a study's runs execute in (``run.workdir``, relative to the file)."""
    base = path.resolve().parent
    return (base / workdir).resolve() if workdir else base
