"""Issue 14 item 9: user text cannot inject markdown into the report or formulas into
the CSV files; one quoting function per format."""

import csv
import textwrap

from hypothesis import given, settings, strategies as st

from studyc import orchestrate, quoting
from studyc.runtime.store import Store
from studyc.spec.loader import load


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_markdown_keeps_any_text_on_one_line(text):
    out = quoting.markdown(text)
    assert "\n" not in out and "\r" not in out
    assert quoting.markdown(out) == out
    assert "|" not in out.replace("\\|", "")


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_csv_cells_never_start_a_formula(text):
    cell = quoting.csv_cell(text)
    assert quoting.csv_cell(cell) == cell
    if cell[:1] in ("=", "+", "-", "@"):
        float(cell)  # only a number may


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_a_fence_holds_any_text(text):
    block = quoting.fenced(text)
    fence = block.split("\n", 1)[0]
    inner = block[len(fence) + 1:-len(fence) - 1]
    assert all(not line.startswith(fence) for line in inner.split("\n"))


def test_report_and_leaderboard_neutralise_user_text(tmp_path, write_study, toy_trainer):
    path = write_study(textwrap.dedent(f"""\
        study: inject
        run:
          command: python {toy_trainer}
          config: {{base: 0.05}}
          seeds: [0, 1]
          resources: {{hours: 0.001}}
        metrics:
          nrmse: {{goal: min, unit: "s\\n# Injected heading"}}
        arms:
          a: {{label: "=HYPERLINK(\\"http://evil\\")"}}
        report: {{leaderboard: {tmp_path / 'board.csv'}}}
        """))
    store = Store(tmp_path / "store")
    orchestrate.execute(load(path), store)
    report = orchestrate.report(load(path), store, tmp_path / "out")
    text = report.paths["report"].read_text()
    assert "\n# Injected" not in text
    with open(tmp_path / "board.csv", newline="") as fh:
        cells = [c for row in csv.reader(fh) for c in row]
    assert "'=HYPERLINK(\"http://evil\")" in cells
    assert not any(c.startswith(("=", "@")) for c in cells)
    with open(report.paths["csv"], newline="") as fh:
        assert not any(c.startswith("=") for row in csv.reader(fh) for c in row)
