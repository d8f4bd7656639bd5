"""The files runs declare they write (`run.artifacts`, an arm's `artifacts`), found in each
run's directory and linked from the report by paths relative to it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

from studyc.report.collect import Results
from studyc.runtime.store import Store

MAX_FILES_PER_PATTERN = 20  # a glob over a checkpoint folder links its first files only


def declared(results: Results) -> dict[str, list[str]]:
    """Arm -> the artifact paths its runs write (the arm's own list, else run.artifacts)."""
    study = results.study
    out = {}
    for spec in results.specs.values():
        own = study.arms[spec.family].artifacts
        paths = own if own is not None else study.run.artifacts
        if paths:
            out[spec.name] = list(paths)
    return out


def artifact_rows(results: Results, store: Store, out: Path) -> list[dict[str, Any]]:
    """Per finished run with declared artifacts: links to the files found, and the
    declared paths that matched nothing."""
    wanted = declared(results)
    if not wanted:
        return []
    here = out.resolve()
    rows = []
    for stage, arms in results.by_stage.items():
        for arm, result in arms.items():
            if arm not in wanted:
                continue
            for run in result.runs:
                if run.status not in ("done", "failed"):
                    continue
                base = store.run_dir(run.id)
                links, missing = [], []
                for pattern in wanted[arm]:
                    found = sorted(p for p in base.glob(pattern) if p.is_file())
                    if not found:
                        missing.append(pattern)
                    for path in found[:MAX_FILES_PER_PATTERN]:
                        rel = os.path.relpath(path.resolve(), here)
                        links.append({"name": path.relative_to(base).as_posix(), "href": quote(Path(rel).as_posix())})
                rows.append({"arm": arm, "stage": stage, "seed": run.seed, "id": run.id, "links": links,
                             "missing": missing})
    return rows
