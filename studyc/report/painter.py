"""Drawing the report's figures with matplotlib's Agg canvas (no pyplot state), from the
plain descriptions studyc.report.plots makes; and, run as a module, the helper process of
`plots.Painter`: it imports matplotlib at once, then draws the figures the report hands
over on stdin (pickled: a list of figures and the folder). It exits 1 when a figure
fails, leaving the report to draw it (and raise) itself.

Imports nothing but matplotlib, lazily: the helper is ready sooner, and the report's own
process imports this module without loading matplotlib.
"""

from __future__ import annotations

import pickle
import sys
import threading
from pathlib import Path
from typing import Any

BASELINE_COLOR = "#C44E52"
BAR_COLOR = "#4C72B0"
BEST_COLOR = "#DD8452"

Figure = dict[str, Any]  # kind, file, title (the report's caption), and what its kind draws


def _canvas(width: float, height: float):
    from matplotlib.figure import Figure as MplFigure

    return MplFigure(figsize=(width, height), dpi=100)


def _draw_baselines(ax, baselines: list[tuple[str, float]], left: float, right: float) -> None:
    """Dashed lines, labelled at alternating ends so that close baselines stay legible."""
    for i, (name, value) in enumerate(baselines):
        ax.axhline(value, linestyle="--", linewidth=1, color=BASELINE_COLOR)
        ax.text(right if i % 2 == 0 else left, value, f" {name} ", va="bottom", ha="right" if i % 2 == 0 else "left",
                fontsize=7, color=BASELINE_COLOR)


def _draw_bars(fig: Figure):
    count = len(fig["means"])
    canvas = _canvas(max(4.5, 0.45 * count + 2.5), 3.8)
    ax = canvas.subplots()
    xs = list(range(count))
    ax.bar(xs, fig["means"], yerr=fig["errors"], capsize=3, color=fig["colors"], alpha=0.85)
    _draw_baselines(ax, fig["baselines"], -0.5, count - 0.5)
    ax.set_xticks(xs, fig["labels"], rotation=30, ha="right", fontsize=7)
    ax.set_ylabel(fig["ylabel"])
    return canvas, ax


def _draw_curves(fig: Figure):
    canvas = _canvas(6.5, 3.8)
    ax = canvas.subplots()
    for arm, c in fig["curves"].items():
        line, = ax.plot(c["step"], c["mean"], linewidth=1.3, label=arm)
        ax.fill_between(c["step"], c["min"], c["max"], color=line.get_color(), alpha=0.15, linewidth=0)
    ax.set_xlabel("step")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_ylabel(fig["ylabel"])
    ax.legend(fontsize=7)
    return canvas, ax


def _draw_stages(fig: Figure):
    columns = fig["columns"]
    canvas = _canvas(max(5.0, 2.2 * len(columns) + 1.5), 4.2)
    ax = canvas.subplots()
    tracks: dict[str, list[tuple[float, float]]] = {}
    for column in columns:
        points = column["points"]
        every = [p for kind in points.values() for p in kind]
        for jx, mean, _, _, name in every:
            tracks.setdefault(name, []).append((jx, mean))
        if every and len(every) <= 50:  # intervals only where they stay readable
            ax.errorbar([p[0] for p in every], [p[1] for p in every], yerr=[[p[2] for p in every], [p[3] for p in every]],
                        fmt="none", ecolor="#999999", elinewidth=0.8, capsize=2)
        small = 24 if len(every) <= 50 else 8
        for kind, style in (("other", {"facecolors": "none", "edgecolors": BAR_COLOR, "s": small}),
                            ("passed", {"facecolors": BAR_COLOR, "edgecolors": BAR_COLOR, "s": small}),
                            ("promoted", {"facecolors": BEST_COLOR, "edgecolors": BEST_COLOR, "s": 90, "marker": "*"})):
            if points[kind]:
                ax.scatter([p[0] for p in points[kind]], [p[1] for p in points[kind]], linewidths=0.8, zorder=3, **style)
        for jx, mean, _, _, name in points["promoted"]:
            ax.annotate(name, (jx, mean), xytext=(4, 4), textcoords="offset points", fontsize=7)
    for track in tracks.values():
        if len(track) > 1:
            xs, ys = zip(*track)
            ax.plot(xs, ys, color=BEST_COLOR, linewidth=0.8, alpha=0.7)
    _draw_baselines(ax, fig["baselines"], -0.6, len(columns) - 0.4)
    ax.set_xticks(list(range(len(columns))), [c["label"] for c in columns], fontsize=8)
    ax.set_xlim(-0.6, len(columns) - 0.4)
    ax.set_ylabel(fig["ylabel"])
    return canvas, ax


def warm_up() -> None:
    """Import matplotlib and load its fonts (a first figure's cost) on a throwaway figure."""
    import io

    canvas = _canvas(1, 1)
    canvas.subplots().set_title("warm-up")
    canvas.savefig(io.BytesIO(), format="png")


DRAW = {"bars": _draw_bars, "curves": _draw_curves, "stages": _draw_stages}


def draw(fig: Figure, plots_dir: Path) -> None:
    import numpy as np

    with np.errstate(all="ignore"):  # values near float range overflow matplotlib's tick arithmetic: no warning
        canvas, ax = DRAW[fig["kind"]](fig)
        ax.set_title(fig["heading"], fontsize=9)
        canvas.tight_layout()
        canvas.savefig(plots_dir / fig["file"])


def main() -> int:
    received: list[bytes] = []
    # Read while importing: a large hand-over must not wait on the pipe for the import.
    reader = threading.Thread(target=lambda: received.append(sys.stdin.buffer.read()), daemon=True)
    reader.start()
    import matplotlib.backends.backend_agg  # noqa: F401 - the import this process exists to overlap

    if reader.is_alive():  # the figures are not here yet: load the fonts meanwhile
        warm_up()
    reader.join()
    if not received[0]:
        return 0  # the report ended before drawing anything
    figures, plots_dir = pickle.loads(received[0])
    for fig in figures:
        draw(fig, Path(plots_dir))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception:  # noqa: BLE001 - the report draws the figures again and reports the error
        sys.exit(1)
