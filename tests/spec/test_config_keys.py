"""Config keys (issue 13, item 2): every key an arm, sweep, stage or profile sets exists in
run.config or is declared new with '+'; the '+' is gone from the resolved config; at run
time studyc.config(defaults) refuses keys the trainer does not know."""

import json

import pytest

from studyc.compiler.plan import Compiler
from studyc.errors import StudyErrors
from studyc.runtime import sdk
from studyc.spec.loader import load, validate_file

STUDY = """\
study: s
run:
  command: python train.py --drop {config.dropout}
  config: {lr: 0.001, optim: {beta: 0.9}}
metrics:
  nrmse: {goal: min}
arms:
  a: {config: {+dropout: 0.1, optim: {beta: 0.95}}}
  sweep:
    config: {+dropout: 0.0}
    grid: {+wd: [0.0, 0.1], optim.beta: [0.9, 0.99]}
stages:
  main: {arms: all, config: {+warmup: 5}}
profiles:
  cpu:
    run:
      config: {lr: 0.01, +tiny: true}
    arms:
      a: {config: {dropout: 0.2, tiny: false}}
"""


def test_new_keys_are_declared_with_plus_and_resolved_without_it(write_study):
    path = write_study(STUDY)
    assert validate_file(path) == []
    loaded = load(path)
    configs = {r.arm: r.config for r in Compiler(loaded).compile().runs}
    assert configs["a"] == {"lr": 0.001, "optim": {"beta": 0.95}, "dropout": 0.1, "warmup": 5, "seed": 0}
    assert configs["sweep_wd0p1_beta0p99"]["wd"] == 0.1 and "+wd" not in configs["sweep_wd0p1_beta0p99"]
    cpu = {r.arm: r.config for r in Compiler(load(path, "cpu")).compile().runs}
    assert cpu["a"]["dropout"] == 0.2 and cpu["a"]["tiny"] is False and cpu["sweep_wd0_beta0p9"]["tiny"] is True


@pytest.mark.parametrize("old, new, message", [
    ("a: {config: {+dropout: 0.1,", "a: {config: {dropout: 0.1,", "'dropout' is not a key of run.config"),
    ("+wd: [0.0, 0.1]", "wd: [0.0, 0.1]", "'wd' is not a key of run.config"),
    ("config: {+warmup: 5}", "config: {warmup: 5}", "'warmup' is not a key of run.config"),
    ("{lr: 0.01, +tiny: true}", "{lr: 0.01, tiny: true}", "'tiny' is not a key of run.config"),
    ("optim: {beta: 0.95}", "optim: {betta: 0.95}", "'betta' is not a key of run.config"),
    ("config: {lr: 0.001,", "config: {+lr: 0.001,", "'+lr': run.config is the base config"),
])
def test_undeclared_or_misdeclared_keys_are_refused_where_they_stand(write_study, old, new, message):
    text = STUDY.replace(old, new, 1)
    assert text != STUDY
    errors = validate_file(write_study(text))
    assert any(message in e.message for e in errors), errors
    err = next(e for e in errors if message in e.message)
    assert err.line > 0 and err.text and err.text[err.col - 1:].lstrip("{+").startswith(
        message.split("'")[1].lstrip("+"))


def test_load_under_a_profile_also_checks_the_file_as_written(write_study):
    with pytest.raises(StudyErrors, match="'dropot' is not a key"):
        load(write_study(STUDY.replace("a: {config: {dropout: 0.2", "a: {config: {dropot: 0.2")), "cpu")


def test_the_trainer_refuses_keys_it_does_not_know(tmp_path, monkeypatch):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"lr": 0.1, "label_smothing": 0.1, "seed": 3}))
    monkeypatch.setenv("STUDYC_CONFIG", str(path))
    with pytest.raises(sdk.UnknownConfigKey) as info:
        sdk.config({"lr": 0.001, "label_smoothing": 0.0})
    assert "'label_smothing' (did you mean 'label_smoothing'?)" in str(info.value)
    path.write_text(json.dumps({"lr": 0.1, "seed": 3}))
    assert sdk.config({"lr": 0.001}) == {"lr": 0.1, "seed": 3}
    assert sdk.config() == {"lr": 0.1, "seed": 3}  # no defaults: nothing to check against


def test_deeply_nested_configs_are_checked_without_recursion():
    from studyc.spec.configkeys import check_config_keys, strip_new

    def nest(depth, leaf):
        node = leaf
        for _ in range(depth):
            node = {"k": node}
        return node

    deep = nest(5000, {"+x": 1})
    stripped = strip_new(deep)
    node = stripped
    for _ in range(5000):
        node = node["k"]
    assert node == {"x": 1}
    problems = []
    check_config_keys({"run": {"config": nest(5000, {"y": 1})}, "arms": {"a": {"config": nest(5000, {"z": 2})}}},
                      lambda path, message, hint: problems.append(message))
    assert problems == ["'z' is not a key of run.config"]
