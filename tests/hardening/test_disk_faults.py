"""Issue 14 items 8 (disk and permission faults, not the store's) and 9: one line naming
the path and the operation, found before any run starts."""

import errno

import pytest
from click.testing import CliRunner

from studyc.cli import main
from testkit.studies import one_run_study


@pytest.fixture
def study(tmp_path, toy_trainer):
    path = tmp_path / "study.yaml"
    path.write_text(one_run_study("disk", f"python {toy_trainer}", config="{base: 0.05}", metric="nrmse"))
    return path


def run(tmp_path, *args):
    return CliRunner().invoke(main, [*args, "--store", str(tmp_path / "st")] if args[0] in ("run", "report") else args)


def assert_one_clean_line(result, *fragments):
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and "internal error" not in result.output
    for fragment in fragments:
        assert fragment in result.output, result.output


def test_plots_being_a_file_is_found_before_any_run(tmp_path, study):
    out = tmp_path / "rep"
    out.mkdir()
    (out / "plots").write_text("not a directory")
    result = run(tmp_path, "run", str(study), "--out", str(out))
    assert_one_clean_line(result, f"cannot write plots in {out / 'plots'}: it is a file")
    assert "start " not in result.output  # nothing ran
    assert not (tmp_path / "st" / "runs").exists() or not any((tmp_path / "st" / "runs").iterdir())


def test_a_report_dir_under_a_file_is_refused_up_front(tmp_path, study):
    (tmp_path / "blocker").write_text("")
    result = run(tmp_path, "run", str(study), "--out", str(tmp_path / "blocker" / "rep"))
    assert_one_clean_line(result, f"cannot write the report in {tmp_path / 'blocker' / 'rep'}")


def test_a_compile_dir_that_cannot_be_written_is_one_line(tmp_path, study):
    (tmp_path / "blocker").write_text("")
    result = run(tmp_path, "compile", str(study), "-o", str(tmp_path / "blocker" / "out"))
    assert_one_clean_line(result, f"cannot write the compiled tasks in {tmp_path / 'blocker' / 'out'}: {tmp_path / 'blocker'} is a file",
                          "a file stands where a directory is needed")


def test_a_disk_that_fills_up_mid_run_is_one_line(tmp_path, study, monkeypatch):
    from studyc.report import render

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "rep" / "report.md"))

    monkeypatch.setattr(render, "render_template", full)
    result = run(tmp_path, "run", str(study), "--out", str(tmp_path / "rep"))
    assert_one_clean_line(result, "No space left on device", str(tmp_path / "rep" / "report.md"), "disk is full")


def test_read_only_report_dir_is_refused_before_runs(tmp_path, study, monkeypatch):
    import studyc.runtime.preflight as preflight

    real = preflight.tempfile.mkstemp

    def read_only(*args, dir=None, **kwargs):
        if str(dir).startswith(str(tmp_path / "rep")):
            raise OSError(errno.EROFS, "Read-only file system", str(dir))
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(preflight.tempfile, "mkstemp", read_only)
    (tmp_path / "rep").mkdir()
    result = run(tmp_path, "run", str(study), "--out", str(tmp_path / "rep"))
    assert_one_clean_line(result, f"cannot write the report in {tmp_path / 'rep'}: Read-only file system",
                          "read-only")
    assert "start " not in result.output
