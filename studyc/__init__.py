"""studyc: a declarative experiment-study compiler for ML research.

The public API is small: ``load`` a study, ``compile`` it to a plan, ``run`` it, and,
inside a training process, ``log`` metrics and read ``config``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from studyc.runtime.sdk import checkpoint_dir, config, log, run_dir, source_run_dir

__version__ = "0.1.0"

if TYPE_CHECKING:  # pragma: no cover
    from studyc.spec.model import Study


def load(path: str, profile: str | None = None) -> "Study":
    """Load and validate a study file; raises StudyErrors with positions."""
    from studyc.spec.loader import load_study

    return load_study(path, profile=profile)


def __getattr__(name: str) -> Any:
    # compile/run pull in the compiler and runtime; import them only when asked for.
    if name == "compile":
        from studyc.compiler.plan import compile_plan

        return compile_plan
    raise AttributeError(name)


__all__ = ["load", "compile", "log", "config", "run_dir", "checkpoint_dir", "source_run_dir", "__version__"]
