"""The public Python API: ``load`` a study, ``compile`` it to a plan, ``run`` it and get the
verdicts; what the CLI does, without printing or exiting (errors are raised: StudyErrors
for the study file, RunError for a refusal such as over budget)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Union

if TYPE_CHECKING:  # pragma: no cover
    from studyc.compiler.plan import Plan
    from studyc.runtime.scheduler import Event
    from studyc.spec.loader import LoadedStudy

StudyLike = Union[str, Path, "LoadedStudy"]


def load(path: str | Path, profile: str | None = None) -> "LoadedStudy":
    """Read and validate a study file (``profile`` laid over it); ``.study`` is the model."""
    from studyc.spec.loader import load as load_file

    return load_file(path, profile)


def _loaded(study: StudyLike, profile: str | None) -> "LoadedStudy":
    """``study`` as loaded with ``profile``: a path is loaded; a loaded study is loaded
    again from its file only when another profile is asked for."""
    from studyc.spec.loader import LoadedStudy

    if not isinstance(study, LoadedStudy):
        return load(study, profile)
    if profile is None or profile == study.profile:
        return study
    return load(study.path, profile)


def compile(study: StudyLike, profile: str | None = None) -> "Plan":  # noqa: A001 - the API's verb
    """Every run with its id, config, command, resources and estimates; the schedule and
    the budget check (``plan.budget['ok']``). Runs nothing."""
    from studyc.orchestrate import compile_study

    return compile_study(_loaded(study, profile)).plan


def run(study: StudyLike, profile: str | None = None, *, store: str | Path | None = None,
        out: str | Path | None = None, rerun: Iterable[str] = (), parallel: int | None = None,
        allow_over_budget: bool = False, on_event: Callable[["Event"], None] | None = None) -> dict[str, Any]:
    """Run the study on this machine (finished runs are reused), judge it and write the
    report into ``out`` (default: the study's report.dir, or reports/<study>/, plus
    /<profile>). Returns the verdicts: ``hypotheses`` (name -> status, sentence, ...),
    ``decision``, tiers; as in verdicts.json."""
    from studyc import orchestrate
    from studyc.artifacts import begin_invocation
    from studyc.runtime.store import Store

    begin_invocation()
    loaded = _loaded(study, profile)
    opened = Store(Path(store) if store is not None else None)
    try:
        plan = orchestrate.execute(loaded, opened, on_event or (lambda event: None), set(rerun), allow_over_budget,
                                   parallel=parallel)
        return orchestrate.report(loaded, opened, Path(out) if out is not None else None, plan).verdicts
    finally:
        opened.close()
