"""Issue 14 items 3, 6 and 9: resource guards on study input, each refused quickly with a
positioned error, each limit raisable with an environment variable."""

import time
from pathlib import Path

import pytest

from studyc.errors import StudyErrors
from studyc.spec.loader import load, validate_file

BROKEN = Path(__file__).parents[1] / "spec" / "broken"
BASE = (BROKEN / "accelerator_format.yaml").read_text().replace('"A100 x1"', '"A100:1"')


def errors_of(path):
    errs = validate_file(path)
    assert errs and all(e.line > 0 and e.col > 0 for e in errs)
    return errs


@pytest.mark.parametrize("name", ["alias_bomb", "deep_config", "huge_grid"])
def test_guards_refuse_within_a_second(name):
    started = time.monotonic()
    errors_of(BROKEN / f"{name}.yaml")
    assert time.monotonic() - started < 2.0


def test_the_sweep_limit_can_be_raised(tmp_path, monkeypatch):
    path = tmp_path / "s.yaml"
    path.write_text(BASE.replace("small: {config: {lr: 0.002}}", "small: {config: {lr: 0.002}}\n  s: {grid: {lr: [1, 2, 3]}}"))
    monkeypatch.setenv("STUDYC_MAX_ARMS", "4")
    assert "STUDYC_MAX_ARMS=40" in errors_of(path)[0].hint
    monkeypatch.setenv("STUDYC_MAX_ARMS", "5")
    assert validate_file(path) == []


def test_a_file_too_large_is_refused_before_it_is_parsed(tmp_path, monkeypatch):
    path = tmp_path / "s.yaml"
    path.write_text(BASE + "#" * 5000 + "\n")
    monkeypatch.setenv("STUDYC_MAX_STUDY_BYTES", "4096")
    err = errors_of(path)[0]
    assert "larger than 4096 bytes" in err.message and "STUDYC_MAX_STUDY_BYTES" in err.hint


def test_invalid_utf8_is_reported_at_its_line_and_column(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_bytes(BASE.encode().replace(b"metrics:", b"metrics: \xff", 1))
    err = errors_of(path)[0]
    assert "not UTF-8" in err.message
    assert (err.line, err.col) == (11, 10)


def test_depth_just_under_the_limit_loads(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(BASE.replace("warmup: 0.05}", "warmup: 0.05, deep: " + "{a: " * 50 + "1" + "}" * 50 + "}"))
    assert load(path).study.run.config["deep"]["a"]["a"]


def test_a_recursive_alias_is_still_refused(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(BASE + "x: &x {y: *x}\n")
    with pytest.raises(StudyErrors, match="refers to the node that contains it"):
        load(path)
