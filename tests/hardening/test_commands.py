"""Issue 14 item 7: validate refuses what would crash later, and accepts braces that are
not placeholders (JSON, ${VAR}, {a,b})."""

import sys

import pytest

from studyc import orchestrate
from studyc.errors import StudyErrors
from studyc.runtime.store import Store
from studyc.compiler.plan import compile_plan
from studyc.spec.loader import load
from testkit.studies import one_run_study


def study(command, extra=""):
    return one_run_study("braces", command, config="{lr: 0.1, model: {width: 4}}", extra=extra)


def test_json_and_shell_braces_are_not_placeholders(tmp_path, write_study):
    trainer = tmp_path / "t.py"
    trainer.write_text("import sys, json, studyc\njson.loads(sys.argv[1])\nstudyc.log(step=0, loss=float(sys.argv[2]))\n")
    command = f"""'{sys.executable} {trainer} "{{\\"opt\\": {{\\"lr\\": 1}}}}" {{config.lr}} ${{HOME:+x}}'"""
    path = write_study(study(command))
    events = []
    orchestrate.execute(load(path), Store(tmp_path / "store"), events.append)
    assert [e.status for e in events if e.kind == "end"] == ["done"]


@pytest.mark.parametrize("command, message", [
    ("python t.py {config.lr.x}", "config.lr is '0.1'"),
    ("python t.py {config.model.depth}", "config.model has no key 'depth'"),
    ("python t.py {lr}", "unknown placeholder '{lr}'"),
    ("python t.py {config.model.width}", None),
])
def test_placeholders_must_resolve_in_every_arm(write_study, command, message):
    path = write_study(study(command))
    if message is None:
        assert load(path).study.run.command == command
        return
    with pytest.raises(StudyErrors) as caught:
        load(path)
    assert message in str(caught.value)
    assert caught.value.errors[0].line == 3


def test_an_arm_command_is_checked_against_that_arms_config(write_study):
    path = write_study(study("python t.py", extra="  b: {command: 'python t.py --w {config.model.width} {config.nope}'}\n"))
    with pytest.raises(StudyErrors, match=r"config has no key 'nope' \(arm 'b'\)"):
        load(path)


def test_an_env_name_with_equals_or_a_nul_value_is_refused(write_study):
    path = write_study(study("python t.py").replace("  seeds: [0]", '  seeds: [0]\n  env: {"A=B": "x", C: "a\\0b"}'))
    with pytest.raises(StudyErrors) as caught:
        load(path)
    messages = [e.message for e in caught.value.errors]
    assert any("'A=B' cannot be" in m for m in messages) and any("NUL" in m for m in messages)


def test_what_validation_leaves_to_the_shell_the_compiler_leaves_too(write_study):
    """One placeholder rule for the check and the fill: `${...}` is the shell's, so a study
    that validates compiles (it crashed with KeyError: the compiler filled `${config.x}`)."""
    path = write_study(study("echo ${config.missing} ${HOME} {config.lr} {seed}"))
    (run,) = compile_plan(load(path)).runs
    assert run.command == "echo ${config.missing} ${HOME} 0.1 0"
