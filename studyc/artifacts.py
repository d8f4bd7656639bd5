"""Versioned JSON artifacts. Every artifact says what wrote it and from which spec, so a
later studyc can read (or upgrade) an old one."""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from studyc import __version__

SCHEMA_VERSIONS = {"plan": 1, "results": 1, "verdicts": 1}


def _clean(value: Any) -> Any:
    """JSON has no NaN or inf: write them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def envelope(kind: str, spec_hash: str, body: dict[str, Any], timestamp: bool = True) -> dict[str, Any]:
    meta = {"kind": kind, "schema_version": SCHEMA_VERSIONS[kind], "studyc_version": __version__, "spec_hash": spec_hash}
    if timestamp:
        meta["generated_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return {"metadata": meta, **_clean(body)}


def write_json(path: Path, data: dict[str, Any], indent: int | None = 2) -> None:
    """Write atomically: a reader never sees half a file. ``indent=None`` writes compact
    JSON, several times faster for large artifacts (json's C encoder)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(json.dumps(data, indent=indent, sort_keys=False))
        fh.write("\n")
    os.replace(tmp, path)
