"""Issue 13 item 1 and issue 14 item 4: run ids cover the code a run executes, in git
(tracked and untracked files) and outside it; git runs nothing a repository configures."""

import os
import subprocess
import textwrap

import pytest
from click.testing import CliRunner

from studyc.cli import main
from studyc.compiler.code import code_files, git_env
from studyc.compiler.plan import compile_plan
from studyc.spec.loader import load

STUDY = """\
study: code
run:
  command: python train.py
  seeds: [0]
metrics:
  loss: {goal: min}
arms:
  a: {}
"""


def ids(path):
    return [r.id for r in compile_plan(load(path)).runs]


def git(cwd, *args):
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, env=git_env())


@pytest.fixture
def work(tmp_path):
    (tmp_path / "study.yaml").write_text(STUDY)
    (tmp_path / "train.py").write_text("print(1)\n")
    return tmp_path


def test_outside_git_editing_the_trainer_changes_run_ids(work):
    before = ids(work / "study.yaml")
    (work / "train.py").write_text("print(2)\n")
    assert ids(work / "study.yaml") != before


def test_outside_git_study_files_docs_outputs_and_ignored_files_do_not_count(work):
    before = ids(work / "study.yaml")
    (work / "study.yaml").write_text(STUDY.replace("seeds: [0]", "seeds: [0]  # a comment"))
    (work / "NOTES.md").write_text("notes")
    (work / "reports").mkdir()
    (work / "reports" / "verdicts.json").write_text("{}")
    (work / "store").mkdir()
    (work / "store" / "store.db").write_text("")
    (work / "store" / "helper.py").write_text("x = 1")  # inside a store: an output
    (work / ".studycignore").write_text("scratch/\n")
    (work / "scratch").mkdir()
    (work / "scratch" / "try.py").write_text("x = 2")
    assert ids(work / "study.yaml") == before
    (work / "utils.py").write_text("x = 3")  # new code does count
    assert ids(work / "study.yaml") != before


def test_gitignore_is_honoured_outside_git(work):
    (work / ".gitignore").write_text("gen_*.py\n!gen_keep.py\n")
    before = ids(work / "study.yaml")
    (work / "gen_a.py").write_text("x = 1")
    assert ids(work / "study.yaml") == before
    (work / "gen_keep.py").write_text("x = 1")
    assert ids(work / "study.yaml") != before


def test_in_git_untracked_and_uncommitted_trainer_edits_change_run_ids(work):
    git(work, "init", "-q")
    git(work, "add", "train.py", "study.yaml")
    git(work, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    committed = ids(work / "study.yaml")
    (work / "model.py").write_text("layers = 2\n")  # untracked, not ignored
    untracked = ids(work / "study.yaml")
    assert untracked != committed
    (work / "model.py").write_text("layers = 3\n")
    assert ids(work / "study.yaml") != untracked
    (work / "model.py").unlink()
    assert ids(work / "study.yaml") == committed
    (work / ".gitignore").write_text("model.py\n")
    (work / "model.py").write_text("layers = 4\n")  # ignored by git: does not count
    with_ignore = ids(work / "study.yaml")
    (work / "model.py").write_text("layers = 5\n")
    assert ids(work / "study.yaml") == with_ignore


def test_plan_never_runs_what_a_repository_configures(work):
    marker = work / "PWNED"
    git(work, "init", "-q")
    git(work, "add", "train.py")
    git(work, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    hook = work / "fsmonitor.sh"
    hook.write_text(f"#!/bin/sh\ntouch {marker}\n")
    hook.chmod(0o755)
    git(work, "config", "core.fsmonitor", str(hook))
    git(work, "config", "core.pager", f"touch {marker}")
    git(work, "config", "diff.external", str(hook))
    (work / "train.py").write_text("print(3)\n")  # a dirty tree: git would consult the fsmonitor
    result = CliRunner().invoke(main, ["plan", str(work / "study.yaml")])
    assert result.exit_code == 0, result.output
    assert not marker.exists(), "studyc plan ran a command the repository's git config names"


def test_plan_explain_lists_the_files_that_count(work):
    (work / "cache").mkdir()
    (work / "cache" / "store.db").write_text("")
    result = CliRunner().invoke(main, ["plan", str(work / "study.yaml"), "--explain"])
    assert result.exit_code == 0, result.output
    assert "  train.py" in result.output and "no git, 1 files" in result.output
    assert "study.yaml  (a study file)" in result.output and "cache/  (studyc output" in result.output


def test_a_fifo_in_the_workdir_does_not_hang_the_hash(work):
    os.mkfifo(work / "pipe.py")
    assert code_files(str(work)).digest


def test_reuse_says_which_code_it_ran(work, tmp_path):
    (work / "train.py").write_text(textwrap.dedent("""\
        import studyc
        studyc.log(step=0, loss=0.5)
        """))
    store = tmp_path / "st"
    args = ["run", str(work / "study.yaml"), "--store", str(store), "--out", str(tmp_path / "rep")]
    first = CliRunner().invoke(main, args)
    assert first.exit_code == 0, first.output
    again = CliRunner().invoke(main, args)
    version = compile_plan(load(work / "study.yaml")).code_version
    assert f"same code ({version})" in again.output, again.output
    (work / "train.py").write_text((work / "train.py").read_text() + "# changed\n")
    third = CliRunner().invoke(main, args)
    assert "reuse  a" not in third.output and "done   a seed 0" in third.output, third.output
