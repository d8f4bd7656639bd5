"""Issue 14 item 9: what the CLI prints is the user's text as written (no rich markup or
emoji codes), control characters are positioned, crash.log lives in $STUDYC_HOME, and a
study name cannot lead the report out of its directory."""

from pathlib import Path

from click.testing import CliRunner

from studyc.cli import main

BASE = (Path(__file__).parents[1] / "spec" / "broken" / "accelerator_format.yaml").read_text() \
    .replace('"A100 x1"', '"A100:1"')


def test_a_position_on_line_100_prints_as_written(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("\n" * 98 + "study: x\nrun: [:smile: [bold]x[/bold]\n")
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 1
    assert f"{path}:100:" in result.output and "💯" not in result.output


def test_markup_in_a_message_is_printed_literally(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(BASE.replace("study: demo", "study: demo\n'[red]x[/red]:100:': 1"))
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert "unknown key '[red]x[/red]:100:'" in result.output


def test_a_control_character_is_reported_at_its_line_and_column(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("study: ééé\nrun:\n  command: a\x07b\n")
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 1
    assert f"{path}:3:13: character U+0007 is not allowed" in result.output


def test_crash_log_goes_to_studyc_home(tmp_path, monkeypatch):
    import studyc.spec.loader as loader

    def boom(*a, **k):
        raise ZeroDivisionError("[bold]boom[/bold]")

    monkeypatch.setattr(loader, "load", boom)
    monkeypatch.chdir(tmp_path)
    home = tmp_path / "home"
    result = CliRunner().invoke(main, ["plan", "x.yaml"], env={"STUDYC_HOME": str(home)})
    assert result.exit_code not in (0, 1)
    assert (home / "crash.log").exists() and not (tmp_path / ".studyc").exists()
    assert "[bold]boom[/bold]" in result.output


def test_a_study_named_dot_dot_is_refused(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(BASE.replace("study: demo", 'study: ".."'))
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 1 and "cannot be a study name" in result.output


def test_the_live_table_prints_markup_in_notes_as_text(tmp_path):
    from rich.console import Console

    from studyc.cli.live import Progress
    from studyc.compiler.plan import compile_plan
    from studyc.runtime.scheduler import Event
    from studyc.spec.loader import load

    path = tmp_path / "s.yaml"
    path.write_text(BASE)
    plan = compile_plan(load(path))
    progress = Progress(plan, live=False)
    progress.tracker.update(Event("start", plan.runs[0], status="running", attempt=1,
                                  message="followed again: [/] -> [bold]x[/bold]"))
    console = Console(record=True, width=200)
    console.print(progress._table())
    assert "[/] -> [bold]x[/bold]" in console.export_text()
