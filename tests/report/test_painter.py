"""The report's figures are drawn by a helper process beside the rest of the report; what
it draws is what the report would draw itself, and a helper that fails or goes away
never loses a figure or hides an error."""

import signal

import pytest

from studyc import orchestrate
from studyc.report import pipeline, plots
from studyc.report.plots import Painter

FIGURES = [
    {"kind": "bars", "file": "nrmse_per_arm.png", "title": "nrmse per arm", "heading": "nrmse per arm (mean, 95% CI)",
     "labels": ["a (n=3)", "b (n=3)"], "means": [0.05, 0.06], "errors": [[0.01, 0.0], [0.01, 0.02]],
     "colors": ["#DD8452", "#4C72B0"], "ylabel": "nrmse", "baselines": [("previous", 0.055)]},
    {"kind": "curves", "file": "nrmse_curves.png", "title": "nrmse learning curves", "heading": "nrmse during training",
     "curves": {"a": {"step": [0, 1, 2], "mean": [0.3, 0.1, 0.05], "min": [0.28, 0.09, 0.04], "max": [0.32, 0.11, 0.06]}},
     "ylabel": "nrmse"},
    {"kind": "stages", "file": "stages.png", "title": "stage tournament", "heading": "stages: nrmse per candidate",
     "columns": [{"label": "screen\n(2 arms)", "points": {"promoted": [(0.0, 0.05, 0.01, 0.01, "a")], "passed": [],
                                                         "other": [(0.012, 0.07, 0.01, 0.01, "b")]}},
                 {"label": "full\n(1 arms)", "points": {"promoted": [], "passed": [(1.0, 0.048, 0.005, 0.005, "a")],
                                                       "other": []}}],
     "ylabel": "nrmse", "baselines": []},
]


def paint(folder, helper, figures=FIGURES):
    folder.mkdir()
    with Painter(helper=helper) as painter:
        painter.paint(figures, folder)
        used = painter.proc is not None
    return used, {f["file"]: (folder / f["file"]).read_bytes() for f in figures}


def test_the_helper_draws_what_the_report_would_draw_itself(tmp_path):
    used, drawn = paint(tmp_path / "helper", helper=True)
    assert used
    here_used, here = paint(tmp_path / "here", helper=False)
    assert not here_used
    assert all(png.startswith(b"\x89PNG\r\n\x1a\n") for png in drawn.values())
    assert drawn == here  # the same figures, byte for byte


def test_a_helper_gone_before_the_hand_over_leaves_the_figures_to_the_report(tmp_path):
    (tmp_path / "plots").mkdir()
    with Painter(helper=True) as painter:
        painter.proc.kill()
        painter.proc.wait()
        painter.paint(FIGURES, tmp_path / "plots")
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == sorted(f["file"] for f in FIGURES)


def test_a_figure_the_helper_cannot_draw_fails_as_it_would_without_one(tmp_path):
    (tmp_path / "plots").mkdir()
    broken = [{**FIGURES[0], "means": ["not a number", 0.06]}]
    with pytest.raises((TypeError, ValueError)):
        with Painter(helper=True) as painter:
            painter.paint(broken, tmp_path / "plots")


def test_leaving_early_stops_the_helper(tmp_path):
    with pytest.raises(RuntimeError):
        with Painter(helper=True) as painter:
            proc = painter.proc
            raise RuntimeError("the report failed before its figures")
    assert proc.poll() is not None and painter.proc is None


def test_nothing_to_draw_stops_the_helper_at_once(tmp_path):
    with Painter(helper=True) as painter:
        proc = painter.proc
        painter.paint([], tmp_path)
    assert proc.poll() is not None and not list(tmp_path.iterdir())


def test_a_large_studys_report_has_its_figures_drawn_by_the_helper(filled, tmp_path, monkeypatch):
    loaded, store = filled
    own = orchestrate.report(loaded, store, tmp_path / "own")
    started = []
    monkeypatch.setattr(pipeline, "LARGE_REPORT_RUNS", 1)
    monkeypatch.setattr(plots, "Painter", lambda helper=True: started.append(helper) or Painter(helper=helper))
    helped = orchestrate.report(loaded, store, tmp_path / "helped")
    assert started == [True]
    assert helped.verdicts == own.verdicts
    figures = sorted(p.name for p in (tmp_path / "own" / "plots").iterdir())
    assert figures and figures == sorted(p.name for p in (tmp_path / "helped" / "plots").iterdir())
    assert all((tmp_path / d / "plots" / f).read_bytes() == (tmp_path / "own" / "plots" / f).read_bytes()
               for d in ("helped",) for f in figures)


def test_a_stuck_helper_is_stopped_and_the_report_draws_itself(tmp_path, monkeypatch):
    monkeypatch.setattr(plots, "HELPER_TIMEOUT_S", 0.5)
    (tmp_path / "plots").mkdir()
    with Painter(helper=True) as painter:
        painter.proc.send_signal(signal.SIGSTOP)  # frozen: it will not draw or exit
        proc = painter.proc
        painter.paint(FIGURES, tmp_path / "plots")
    assert proc.poll() is not None
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == sorted(f["file"] for f in FIGURES)
