"""The public API as the README shows it: the snippet itself runs, on a tiny study with a
fast trainer placed where the snippet expects the study file."""

import re
import sys
from pathlib import Path

import pytest

import studyc

REPO = Path(__file__).resolve().parents[1]

TINY = f"""\
study: api-tiny
run:
  command: {sys.executable} train.py
  workdir: ..
  config: {{base: 0.05}}
  seeds: [0, 1]
  resources: {{hours: 0.001}}
metrics:
  nrmse: {{goal: min}}
baselines:
  ref: {{nrmse: 0.2, source: a loose bound}}
arms:
  a: {{}}
hypotheses:
  H1: {{claim: a beats the bound, check: a.nrmse <= ref.nrmse}}
profiles:
  cpu: {{run: {{config: {{base: 0.04}}}}}}
"""


def readme_python_snippet() -> str:
    text = (REPO / "README.md").read_text()
    section = text.split("### From Python", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_api_snippet_runs(tmp_path, monkeypatch, toy_trainer, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "train.py").write_text(toy_trainer.read_text())
    (tmp_path / "studies").mkdir()
    (tmp_path / "studies" / "burgers_phase3_ablation.yaml").write_text(TINY)
    exec(compile(readme_python_snippet(), "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "2 runs, $0.00 estimated, budget ok: True" in out
    assert re.search(r"^H1 PASS ", out, re.M), out
    assert (tmp_path / "reports" / "api-tiny" / "cpu" / "ablation_report.md").exists()
    assert (tmp_path / ".studyc" / "store.db").exists()


def test_compile_takes_a_loaded_study_a_path_and_a_profile(write_study, toy_trainer):
    path = write_study(TINY.replace("workdir: ..", f"workdir: {toy_trainer.parent}"))
    loaded = studyc.load(path)
    assert loaded.study.study == "api-tiny" and loaded.profile is None
    base = studyc.compile(loaded)
    assert [r.config["base"] for r in base.runs] == [0.05, 0.05]
    cpu = studyc.compile(loaded, profile="cpu")
    assert cpu.profile == "cpu" and [r.config["base"] for r in cpu.runs] == [0.04, 0.04]
    assert [r.id for r in studyc.compile(str(path)).runs] == [r.id for r in base.runs]


def test_run_returns_the_verdicts_and_reuses_finished_runs(write_study, toy_trainer, tmp_path):
    path = write_study(TINY.replace("workdir: ..", f"workdir: {toy_trainer.parent}").replace("train.py", str(toy_trainer)))
    events = []
    verdicts = studyc.run(path, store=tmp_path / "store", out=tmp_path / "out", on_event=events.append)
    assert verdicts["hypotheses"]["H1"]["status"] == "PASS"
    assert sorted(e.kind for e in events if e.kind in ("start", "end")) == ["end", "end", "start", "start"]
    events.clear()
    again = studyc.run(path, store=tmp_path / "store", out=tmp_path / "out", on_event=events.append)
    assert [e.kind for e in events] == ["cached", "cached"]
    assert again["hypotheses"] == verdicts["hypotheses"]


def test_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError):
        studyc.no_such_thing  # noqa: B018
