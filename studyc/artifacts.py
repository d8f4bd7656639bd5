"""Versioned JSON artifacts (plan.json, results.json, verdicts.json), written and read back.

Every artifact says what wrote it (kind, schema_version, studyc_version), from which spec
(spec_hash) and, unless it must be reproducible byte for byte, in which invocation: every
artifact one command writes shares one ``invocation_id`` (as dbt's do), so a reader can
tell a plan.json and a verdicts.json of the same `studyc run` from a mix of two. A reader
checks the kind and the schema version and upgrades an older artifact step by step.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import orjson

from studyc import __version__
from studyc.errors import RunError

SCHEMA_VERSIONS = {"plan": 1, "results": 1, "verdicts": 1}

# (kind, version) -> a function turning that version's artifact into the next version's.
# A change to an artifact's shape bumps SCHEMA_VERSIONS[kind] and registers its upgrade here.
UPGRADES: dict[tuple[str, int], Callable[[dict[str, Any]], dict[str, Any]]] = {}

_invocation: str | None = None


def begin_invocation() -> str:
    """Start a new invocation (one CLI command, one API call): a fresh id for the artifacts it writes."""
    global _invocation
    _invocation = uuid.uuid4().hex
    return _invocation


def invocation_id() -> str:
    return _invocation or begin_invocation()


def envelope(kind: str, spec_hash: str, body: dict[str, Any], timestamp: bool = True) -> dict[str, Any]:
    """The artifact: metadata then ``body``. ``timestamp=False`` for a reproducible artifact
    (`studyc compile`: same study, same bytes), which then carries no invocation id either."""
    meta = {"kind": kind, "schema_version": SCHEMA_VERSIONS[kind], "studyc_version": __version__, "spec_hash": spec_hash}
    if timestamp:
        meta["generated_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        meta["invocation_id"] = invocation_id()
    return {"metadata": meta, **body}


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write atomically (atomic_write), indented, with orjson: a large
    sweep's results.json is tens of MB, ten times faster than with the json module. NaN
    and infinities are written as null (JSON has neither); numpy numbers as numbers."""
    try:
        text = orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY)
    except TypeError:  # an integer past 64 bits (a config value may be one): the json module writes any int
        text = json.dumps(_finite(data), indent=2).encode()
    atomic_write(path, text + b"\n")


def atomic_write(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` in one step (a reader sees the old file or the new,
    never half of one), keeping its permissions, or as an ordinary new file would have them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o7777 if path.exists() else 0o666 & ~_umask()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)  # mkstemp makes it private
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _finite(value: Any) -> Any:
    """NaN and infinities as null, as orjson writes them."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def read_artifact(path: Path, kind: str) -> dict[str, Any] | None:
    """The artifact at ``path`` upgraded to this studyc's schema, None when there is none.
    Raises RunError when it is not a ``kind`` artifact, or was written by a newer studyc."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))  # exact: orjson reads a large int as a float
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RunError(f"cannot read {path}: {exc}", "delete it; the next `studyc run` writes it again") from None
    meta = data.get("metadata") if isinstance(data, dict) else None
    if not isinstance(meta, dict) or meta.get("kind") != kind or not isinstance(meta.get("schema_version"), int):
        raise RunError(f"{path} is not a studyc {kind} artifact (no metadata.kind '{kind}' with a schema_version)",
                       "delete it or point --out elsewhere; the next `studyc run` writes it again")
    current = SCHEMA_VERSIONS[kind]
    version = meta["schema_version"]
    if version > current:
        raise RunError(f"{path} has {kind} schema version {version}, written by studyc {meta.get('studyc_version')}; "
                       f"this studyc ({__version__}) reads up to version {current}", "upgrade studyc")
    while version < current:
        upgrade = UPGRADES.get((kind, version))
        if upgrade is None:
            raise RunError(f"{path} has {kind} schema version {version}, which this studyc cannot upgrade",
                           "delete it; the next `studyc run` writes it again")
        data = upgrade(data)
        version += 1
        data["metadata"]["schema_version"] = version
    return data
