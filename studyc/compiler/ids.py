"""Content-addressed run ids: a hash of what determines a run's result."""

from __future__ import annotations

import hashlib
import json
import subprocess
from functools import lru_cache
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


@lru_cache(maxsize=16)
def code_version(workdir: str) -> str | None:
    """The git commit of ``workdir`` plus a hash of uncommitted changes to tracked files,
    or None outside git. Editing the training code therefore changes every run id."""
    try:
        head = subprocess.run(["git", "-C", workdir, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return None
        # Study files and docs do not change what a run computes: editing a threshold
        # must not re-run anything.
        diff = subprocess.run(["git", "-C", workdir, "diff", "HEAD", "--", ".", *(f":(exclude)*.{ext}" for ext in ("yaml", "yml", "md"))],
                              capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    version = head.stdout.strip()
    if diff.stdout:
        version += "+" + hashlib.sha256(diff.stdout).hexdigest()[:12]
    return version


def study_root(path: Path, workdir: str | None) -> Path:
    """The directory a study's runs execute in (``run.workdir``, relative to the file)."""
    base = path.resolve().parent
    return (base / workdir).resolve() if workdir else base
