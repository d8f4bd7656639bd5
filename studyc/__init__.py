"""studyc: a declarative experiment-study compiler for ML research.

The public API is small: ``load`` a study, ``compile`` it to a plan, ``run`` it (the
verdicts come back), and, inside a training process, ``log`` metrics and read ``config``.
"""

from __future__ import annotations

from typing import Any

from studyc.runtime.sdk import checkpoint_dir, config, log, run_dir, source_run_dir

__version__ = "0.1.0"

_API = ("load", "compile", "run")


def __getattr__(name: str) -> Any:
    # The API pulls in the loader, compiler and runtime: a training process that only
    # logs never imports them.
    if name in _API:
        from studyc import api

        return getattr(api, name)
    raise AttributeError(f"module 'studyc' has no attribute '{name}'")


__all__ = ["load", "compile", "run", "log", "config", "run_dir", "checkpoint_dir", "source_run_dir", "__version__"]
