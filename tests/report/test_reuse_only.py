"""A study made only of reused results is judged and reported (issue 13, item 10): there
is nothing to run, and per-run derived metrics are computed from the reused values."""

import json

from studyc import orchestrate
from studyc.runtime.store import Store
from studyc.spec.loader import load

STUDY = """\
study: reuse-only
run: {command: "true"}
metrics:
  peak: {goal: max}
  final: {goal: max}
  drop: {expr: peak - final, goal: min}
  gain: {expr: a.final - b.final, goal: max}
arms:
  a: {reuse: {results: {peak: [0.8, 0.82, 0.81], final: [0.7, 0.71, 0.72]}, source: an earlier study}}
  b: {reuse: {results: {peak: 0.6, final: [0.5, 0.52, 0.51]}}}
  c: {reuse: {results: {peak: 0.9, final: 0.8}}}
hypotheses:
  H1: {claim: a beats b, check: a.final >= b.final + 0.1}
  H2: {claim: a is stable, check: a.drop <= 0.2 and b.drop <= 0.2}
  H3: {claim: the gain is real, check: gain >= 0.1}
  H4: {claim: one reported number, check: c.final >= 0.5}
"""


def test_a_study_of_reused_results_only_is_reported(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(STUDY)
    built = orchestrate.report(load(path), Store(tmp_path / "home"), tmp_path / "report")
    hyps = built.verdicts["hypotheses"]
    assert {h: v["status"] for h, v in hyps.items()} == {"H1": "PASS", "H2": "PASS", "H3": "PASS", "H4": "PASS"}
    assert "a.drop = 0.1" in hyps["H2"]["sentence"]  # peak - final per reused seed: 0.1, 0.11, 0.09
    assert "b.drop = 0.09" in hyps["H2"]["sentence"]  # a single peak counts for every seed
    report = (tmp_path / "report" / "ablation_report.md").read_text()
    # one value: judged on the point, with no p-value, shown as —, never "holds after Holm"
    assert hyps["H4"]["p"] is None and hyps["H4"]["holds_after_holm"] is None
    assert "| 1 | **PASS** | — |" in report
    assert json.loads((tmp_path / "report" / "verdicts.json").read_text())["hypotheses"]["H1"]["status"] == "PASS"
