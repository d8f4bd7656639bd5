"""Loading: positions, hints, profiles. A broken study must give a positioned StudyError."""

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from studyc.errors import StudyErrors
from studyc.spec.loader import load, validate_file

REPO = Path(__file__).resolve().parents[2]
PHASE3 = REPO / "studies" / "burgers_phase3_ablation.yaml"

MINIMAL = """\
study: s
run:
  command: python train.py
  config: {lr: 0.001, batch_size: 8}
  seeds: [0, 1]
metrics:
  nrmse: {goal: min}
baselines:
  base: {nrmse: 0.06}
arms:
  a: {config: {lr: 0.002}}
  b: {}
hypotheses:
  H1: {claim: a is good, check: a.nrmse <= base.nrmse}
"""


def errors_of(write_study, text):
    return validate_file(write_study(text))


def test_minimal_study_loads(write_study):
    loaded = load(write_study(MINIMAL))
    assert loaded.study.arms["a"].config == {"lr": 0.002}
    assert loaded.study.primary_metric == "nrmse"


def test_phase3_study_has_the_seed_figures():
    study = load(PHASE3).study
    assert study.baselines["u_shaped_128"].values["nrmse"] == 0.0577
    assert study.baselines["u_shaped_256"].values["nrmse"] == 0.0596
    assert study.hypotheses["H1"].check == "pure_128.nrmse <= 1.05 * u_shaped_128.nrmse"
    assert study.budget.usd == 4.50 and study.budget.gpu_hours == 3 and study.budget.wall == 3
    assert set(study.arms) == {"pure_128", "pure_256", "chansep_128"}
    assert validate_file(PHASE3) == []


def test_cpu_profile_overlays_the_study():
    study = load(PHASE3, profile="cpu").study
    assert study.run.resources.accelerators is None
    assert study.run.seeds == [0, 1, 2]
    assert study.arms["pure_256"].config == {"architecture": "pure", "tokens": 32}
    assert study.run.config["attention"] == "standard"  # untouched keys survive the overlay
    assert study.run.config["epochs"] == 3


@pytest.mark.parametrize("mutation, line, fragment, hint", [
    (("  seeds: [0, 1]", "  seed: [0, 1]"), 5, "unknown key 'seed'", "did you mean 'seeds'?"),
    (("check: a.nrmse <= base.nrmse", "check: c.nrmse <= base.nrmse"), 14, "unknown arm or baseline 'c'", "expected one of"),
    (("check: a.nrmse <= base.nrmse", "check: a.nrmsee <= base.nrmse"), 14, "unknown metric 'nrmsee'", "did you mean 'nrmse'?"),
    (("  seeds: [0, 1]", "  seeds: [zero, 1]"), 5, "expected a whole number", None),
    (("  nrmse: {goal: min}", "  nrmse: {goal: min"), 8, "YAML syntax error", None),
    (("  b: {}", "\tb: {}"), 12, "tab character", "spaces"),
    (("  b: {}", "  a: {}"), 12, "duplicate key 'a'", None),
])
def test_broken_studies_name_the_line(write_study, mutation, line, fragment, hint):
    old, new = mutation
    assert old in MINIMAL
    errors = errors_of(write_study, MINIMAL.replace(old, new, 1))
    assert errors, "expected an error"
    err = errors[0]
    assert err.line == line, str(err)
    assert fragment in err.message
    if hint:
        assert hint in (err.hint or "")


def test_expression_error_points_inside_the_expression(write_study):
    errors = errors_of(write_study, MINIMAL.replace("check: a.nrmse <= base.nrmse", "check: a.nrmse <= base.nrmsf"))
    err = errors[0]
    assert err.line == 14
    assert err.text[err.col - 1:].startswith("nrmsf")


def test_all_problems_are_reported_at_once(write_study):
    text = MINIMAL.replace("  seeds: [0, 1]", "  seed: [0, 1]").replace("goal: min", "goal: lowest")
    errors = errors_of(write_study, text)
    assert len(errors) >= 2


def test_unknown_profile_suggests_the_nearest(write_study):
    text = MINIMAL + "profiles:\n  cpu: {run: {seeds: [0]}}\n"
    with pytest.raises(StudyErrors) as info:
        load(write_study(text), profile="cpuu")
    assert "did you mean 'cpu'" in info.value.errors[0].hint


def test_errors_inside_a_profile_are_found_by_validate(write_study):
    text = MINIMAL + "profiles:\n  cpu: {run: {seeds: [zero]}}\n"
    errors = errors_of(write_study, text)
    assert errors and "profile 'cpu'" in errors[0].message and errors[0].line == 16


def test_missing_file_is_a_study_error(tmp_path):
    errors = validate_file(tmp_path / "nope.yaml")
    assert errors and "not found" in errors[0].message


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=200))
def test_arbitrary_text_gives_study_errors_only(tmp_path, text):
    path = tmp_path / "fuzz.yaml"
    path.write_text(text)
    try:
        load(path)
    except StudyErrors as exc:
        assert all(e.message for e in exc.errors)


yaml_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=10)),
    lambda children: st.one_of(st.lists(children, max_size=3), st.dictionaries(st.text(max_size=8), children, max_size=3)),
    max_leaves=10,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(st.sampled_from(["study", "run", "metrics", "arms", "hypotheses", "budget", "stages", "foo"]),
                       yaml_values, max_size=6))
def test_arbitrary_yaml_structures_give_study_errors_only(tmp_path, data):
    import json

    path = tmp_path / "fuzz.yaml"
    path.write_text(json.dumps(data))  # JSON is YAML
    try:
        load(path)
    except StudyErrors as exc:
        assert all(e.line >= 0 for e in exc.errors)


STUDY_TEXTS = {p.name: p.read_text() for p in sorted((REPO / "studies").glob("*.yaml"))}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(sorted(STUDY_TEXTS)), edits=st.lists(st.tuples(
    st.sampled_from(["drop", "copy", "insert", "swap"]), st.integers(0, 10_000),
    st.sampled_from(list(" :-[]{}#'\"\t\n,.*&!|>%@`0aZ_=<()")),
), min_size=1, max_size=4))
def test_damaged_real_studies_give_study_errors_only(tmp_path, name, edits):
    """Real study files with lines dropped or duplicated and characters inserted: every
    outcome is a valid study or positioned StudyErrors, never another exception."""
    lines = STUDY_TEXTS[name].splitlines()
    for kind, where, char in edits:
        i = where % max(1, len(lines))
        if kind == "drop" and lines:
            del lines[i]
        elif kind == "copy" and lines:
            lines.insert(i, lines[i])
        elif kind == "swap" and len(lines) > 1:
            lines[i - 1], lines[i] = lines[i], lines[i - 1]
        elif lines:
            col = where % (len(lines[i]) + 1)
            lines[i] = lines[i][:col] + char + lines[i][col:]
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    for err in validate_file(path):
        assert err.message and err.line >= 0 and err.file == str(path)
