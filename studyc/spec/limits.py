"""Resource guards on study input: a hostile or mistaken file is refused quickly with a
positioned error instead of taking minutes and gigabytes. Each limit can be raised with
an environment variable (docs/robustness.md)."""

from __future__ import annotations

import os

_DEFAULTS = {
    "STUDYC_MAX_STUDY_BYTES": 4 << 20,  # a large real study is ~20 KB
    "STUDYC_MAX_YAML_NODES": 200_000,  # after aliases are expanded; a large real study has ~5,000
    "STUDYC_MAX_DEPTH": 64,  # nesting of mappings and lists; run.config rarely goes past 5
    "STUDYC_MAX_ARMS": 10_000,  # arms after sweeps are expanded
}


def limit(name: str) -> int:
    """The limit ``name`` (its environment variable overrides the default when a whole number > 0)."""
    value = os.environ.get(name, "")
    return int(value) if value.isdigit() and int(value) > 0 else _DEFAULTS[name]


def raise_hint(name: str) -> str:
    return f"if this is intended, raise the limit: export {name}={limit(name) * 10}"
