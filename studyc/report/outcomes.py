"""Verdicts over how runs ended rather than what they measured: `failed(x)` for decision
rules (seed 003's "if critical failure: DEBUG & ADJUST CONFIG"), the smoke stage, and which
named expectation scenario the observations match."""

from __future__ import annotations

from typing import Any

from studyc.report.collect import Results, RunResult

FINAL = ("done", "failed", "skipped")


def runs_of(results: Results, name: str) -> tuple[str, list[RunResult]]:
    """The runs an arm, sweep family or stage name stands for, and what it is."""
    study = results.study
    if name in study.stages:
        return "stage", [r for arm in results.by_stage.get(name, {}).values() for r in arm.runs]
    arms = {a.name for a in results.specs.values() if a.name == name or a.family == name}
    kind = "arm" if name in arms else "sweep"
    return kind, [r for stage in results.by_stage.values() for arm, result in stage.items() if arm in arms
                  for r in result.runs]


def failed(results: Results, name: str) -> tuple[bool | None, str]:
    """True when a run of ``name`` ended failed (after its retries); False when all of its
    runs ended otherwise; None while some have not ended and none failed."""
    kind, runs = runs_of(results, name)
    bad = [r for r in runs if r.status == "failed"]
    if bad:
        classes = sorted({r.failure or "failed" for r in bad})
        return True, f"failed({name}): {len(bad)} of {len(runs)} runs of {kind} {name} failed ({', '.join(classes)})"
    open_ = [r for r in runs if r.status not in FINAL]
    if open_ or not runs:
        why = f"{len(open_)} of {len(runs)} runs have not ended" if runs else "it has no runs yet"
        return None, f"failed({name}): {why}"
    return False, f"failed({name}): none of the {len(runs)} runs of {kind} {name} failed"


def smoke_failure(results: Results) -> dict[str, Any] | None:
    """The smoke stage's runs that did not finish, when there are any: the study stopped."""
    stage = results.study.smoke_stage
    if stage is None:
        return None
    runs = [r for arm in results.by_stage.get(stage, {}).values() for r in arm.runs]
    bad = [r for r in runs if r.status in ("failed", "skipped")]
    if not bad:
        return None
    return {"stage": stage, "runs": [{"arm": r.arm, "seed": r.seed, "status": r.status, "failure": r.failure,
                                      "id": r.id} for r in bad]}


def scenarios(study, expectation_rows) -> dict[str, Any]:
    """Each scenario's ranges against the observations (``expectation_rows(name)`` gives
    the rows as for `expect`), and the scenarios every observed range hits."""
    out: dict[str, Any] = {}
    for name in study.scenarios:
        rows = expectation_rows(name)
        hits = sum(r["status"] == "hit" for r in rows)
        pending = sum(r["status"] == "pending" for r in rows)
        status = "pending" if pending == len(rows) else "match" if hits == len(rows) else \
            "partial" if hits + pending == len(rows) else "miss"
        out[name] = {"status": status, "hits": hits, "pending": pending, "total": len(rows), "rows": rows}
    matched = [n for n, s in out.items() if s["status"] == "match"]
    observed = [n for n, s in out.items() if s["status"] != "pending"]
    if matched:
        summary = "the observations match " + " and ".join(f"'{n}'" for n in matched)
    elif not observed:
        summary = "no observations yet"
    else:
        best = max(observed, key=lambda n: out[n]["hits"] / max(1, out[n]["total"] - out[n]["pending"]))
        summary = (f"no scenario matches every range; closest: '{best}' ({out[best]['hits']} of "
                   f"{out[best]['total']} ranges hit)")
    return {"scenarios": out, "matched": matched, "summary": summary} if out else {}
