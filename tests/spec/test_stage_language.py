"""The stage-graph language: smoke and evaluation stages, failed(), claims with checks,
scenarios and artifacts. Each problem names its line and column."""

import pytest

from studyc.spec.loader import load, validate_file

BASE = """\
study: s
run:
  command: python train.py
  config: {lr: 0.001}
  seeds: [0, 1]
  artifacts: [eval/compare.json]
metrics:
  nrmse: {goal: min}
  acc: {goal: max}
arms:
  a: {config: {lr: 0.002}, artifacts: [checkpoints/*.pt]}
  b: {}
hypotheses:
  H1: {claim: a is good, check: a.nrmse <= b.nrmse}
stages:
  test_run: {arms: [b], smoke: true}
  round_a: {arms: [a], promote: {top: 1}}
  round_b: {arms: [b], promote: {top: 1}}
  full_eval: {arms: promoted, needs: [round_a, round_b], evaluate: "python eval.py --seed {seed}"}
claims:
  "a beats b by a bar": {hypotheses: [H1], check: a.acc > 0.70}
  "plain list": [H1]
scenarios:
  optimistic: {a: {acc: [0.8, 1.0]}}
  worst: {a: {acc: [null, 0.5]}}
decision:
  - {if: failed(a) or failed(round_b), then: DEBUG and adjust the config}
  - {else: go on}
"""


def errors(write_study, text):
    return validate_file(write_study(text))


def test_the_full_language_validates(write_study):
    path = write_study(BASE)
    assert validate_file(path) == []
    study = load(path).study
    assert study.stages["test_run"].smoke and study.stages["full_eval"].evaluate.startswith("python eval.py")
    assert study.claim("a beats b by a bar").check == "a.acc > 0.70"
    assert study.claim("plain list").hypotheses == ["H1"] and study.claim("plain list").check is None
    assert study.scenarios["worst"]["a"]["acc"] == [None, 0.5]
    assert study.run.artifacts == ["eval/compare.json"] and study.arms["a"].artifacts == ["checkpoints/*.pt"]
    assert study.machine is None


def _one(errs):
    assert len(errs) == 1, [e.message for e in errs]
    return errs[0]


def line_of(text: str, fragment: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if fragment in line)


@pytest.mark.parametrize("old, new, fragment", [
    ("failed(a) or", "failed(zz) or", "unknown arm or stage 'zz'"),
    ("failed(a) or", "failed(a.acc) or", "takes the name of an arm or stage"),
    ("check: a.acc > 0.70", "check: a.acx > 0.70", "unknown metric 'acx'"),
    ("{hypotheses: [H1], check", "{hypotheses: [H9], check", "unknown hypothesis 'H9'"),
    ("worst: {a: {acc: [null, 0.5]}}", "worst: {a: {acc: [0.9, 0.5]}}", "is empty"),
    ("worst: {a: {acc", "worst: {q: {acc", "unknown arm 'q'"),
    ("{arms: [b], smoke: true}", "{arms: [b], smoke: true, needs: [round_a]}", "needs none"),
    ("arms: promoted, needs: [round_a, round_b], evaluate", "arms: [a], needs: [round_a, round_b], evaluate",
     "evaluates the runs that the stages it needs promote"),
    ("--seed {seed}", "--seed {config.nope}", "unknown placeholder '{config.nope}'"),
    ("artifacts: [eval/compare.json]", "artifacts: [../escape.json]", "leaves the run directory"),
])
def test_broken_stage_language_names_the_place(write_study, old, new, fragment):
    assert old in BASE
    text = BASE.replace(old, new)
    line = line_of(text, new)
    err = _one(errors(write_study, text))
    assert fragment in err.message, err.message
    assert err.line == line, (err.line, err.message)
    assert err.hint


def test_failed_points_at_its_argument(write_study):
    err = _one(errors(write_study, BASE.replace("failed(a) or", "failed(zz) or")))
    assert err.text[err.col - 1:].startswith("zz"), (err.text, err.col)
    assert "did you mean" not in (err.hint or "") or "'a'" in err.hint


def test_failed_is_refused_where_one_run_is_judged(write_study):
    text = BASE.replace("  acc: {goal: max}\n", "  acc: {goal: max}\nstop:\n  crashed: failed(a)\n")
    err = _one(errors(write_study, text))
    assert "not one run's values" in err.message


def test_two_smoke_stages_are_refused(write_study):
    err = _one(errors(write_study, BASE.replace("round_b: {arms: [b], promote", "round_b: {arms: [b], smoke: true, promote")))
    assert "only one stage can be the smoke test" in err.message and err.line == line_of(BASE, "round_b:")


def test_evaluation_stage_takes_its_seeds_from_the_runs(write_study):
    err = _one(errors(write_study, BASE.replace('evaluate: "python', 'seeds: [5], evaluate: "python')))
    assert "seeds" in err.message and err.line == line_of(BASE, "full_eval:")


def test_a_claim_needs_hypotheses_or_a_check(write_study):
    err = _one(errors(write_study, BASE.replace("{hypotheses: [H1], check: a.acc > 0.70}", "{description: x}")))
    assert "needs 'hypotheses', a 'check', or both" in err.message and err.line == line_of(BASE, "a beats b")


def test_contention_must_not_be_negative(write_study):
    err = _one(errors(write_study, BASE + "machine: {accelerators: 'A100:1', contention: -1}\n"))
    assert err.path == ("machine", "contention") and ">= 0" in err.message
    assert load(write_study(BASE + "machine: {accelerators: 'A100:1'}\n")).study.machine.contention == 1.0
