"""The progress of a run as it happens: a live table on a terminal, plain log lines
otherwise, and what Ctrl-C does to cloud jobs in flight."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import click

from studyc.cli import views


class Progress:
    """Shows run events: a live table on a terminal (counts, each run's latest metrics,
    elapsed, ETA, spend), plain log lines otherwise."""

    MAX_ROWS = 20

    def __init__(self, plan: Any, live: bool, parallel: int | None = None, remote: bool = False):
        from studyc.runtime.progress import Tracker

        self.tracker = Tracker(plan.runs, parallel or plan.parallel, needs={s.name: s.after for s in plan.stages},
                               remote=remote)
        self.code = plan.code_version  # in every run id: a reused run ran this very code
        self.console = views.terminal()
        self.live = None
        self.sequential: list[str] = []  # --until-settled: the open hypotheses at the latest look
        if live:
            from rich.live import Live

            # Redrawn from the tracker at each refresh, so times and ETA move between events.
            self.live = Live(console=self.console, refresh_per_second=4, transient=False, get_renderable=self._table)

    def __enter__(self) -> "Progress":
        if self.live:
            self.live.__enter__()
        return self

    def __exit__(self, exc_type: Any, *exc: object) -> None:
        if self.live:
            self.live.__exit__(None, None, None)
        elif exc_type is not None:  # interrupted: where the study was left
            click.echo(self._summary())

    def _summary(self, sep: str = "; ") -> str:
        from studyc.runtime.progress import duration_text

        t = self.tracker
        c = t.counts()
        usd, gpu_hours = t.spent()
        eta = t.eta_s()
        return (f"{c['done'] + c['cached'] + c['failed'] + c['skipped']}/{t.total} ended ({c['done']} done, "
                f"{c['cached']} reused, {c['failed']} failed, {c['skipped']} skipped), {c['running']} running, "
                f"{c['queued']} queued{sep}{duration_text(t.elapsed())} elapsed"
                + (f", ETA {duration_text(eta)}" if eta is not None else "")
                + f", spent {views.money(usd)}, {gpu_hours:.2f} GPU-h")

    def _table(self):
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text
        from studyc.runtime.progress import duration_text, metrics_text

        now = self.tracker.clock()
        shown, hidden = self.tracker.rows(self.MAX_ROWS)
        staged = len(self.tracker.stage_order) > 1
        table = Table(expand=False, caption=f"... and {hidden} more" if hidden else None, caption_justify="left")
        for col in ("arm",) + (("stage",) if staged else ()) + ("seed", "status", "attempt", "time", "latest"):
            table.add_column(col)
        for view in shown:
            run, elapsed = view.run, view.elapsed(now)
            step = view.latest.get("step")
            latest = (f"step {step:g} " if step is not None else "") + metrics_text(view.latest)
            cells = [run.arm, *((run.stage,) if staged else ()), str(run.seed),
                     view.status + (f" ({view.failure})" if view.failure else ""), str(view.attempt or ""),
                     duration_text(elapsed) if elapsed is not None else "", latest or view.note or ""]
            table.add_row(*(Text(c) for c in cells))  # Text: a config value "[/]" is not markup
        return Group(Text(self._summary(sep="\n")), table, *map(Text, self.sequential))

    def look(self, look: Any) -> None:
        """--until-settled: each open hypothesis' interval against its threshold and its
        seeds after a batch; drawn under the table, or logged."""
        self.sequential = [f"look {look.number}: seeds per arm " + ", ".join(f"{a} {n}" for a, n in look.seeds.items())]
        for h in look.hypotheses:
            if h["open"]:
                self.sequential.append(f"  {h['hypothesis']} {h['status']}: {h['interval']} "
                                       f"({h['seeds_per_arm']} seeds per arm)")
        settled = [h["hypothesis"] + " " + h["status"] for h in look.hypotheses if not h["open"]]
        if settled:
            self.sequential.append("  settled: " + ", ".join(settled))
        self.sequential.append("  next: " + (", ".join(f"{a} +{k}" for a, k in look.adding.items()) if look.adding
                                             else f"stop ({look.stop})"))
        if not self.live:
            click.echo("\n".join(self.sequential))

    def __call__(self, event: Any) -> None:
        from studyc.runtime.progress import duration_text, metrics_text

        view = self.tracker.update(event)
        if self.live:
            return
        run, kind = event.run, event.kind
        who = f"{run.arm} seed {run.seed}" + (f" [{run.stage}]" if len(self.tracker.stage_order) > 1 else "")
        took = duration_text(view.elapsed(self.tracker.clock()) or 0)
        if kind == "cached":
            line = (f"reuse  {who} ({run.id}): {event.message or 'finished earlier'}, same code "
                    f"({self.code or 'unknown'})")
        elif kind == "start":
            line = f"start  {who} ({run.id}), attempt {event.attempt}" + (f", {event.message}" if event.message else "")
        elif kind == "retry":
            line = f"retry  {who}: {event.failure}; {event.message}"
        elif kind == "skip":
            line = f"skip   {who}: {event.message}"
        elif kind == "wait":
            line = f"wait   {who}: {event.message}"
        elif kind == "end" and event.status == "done":
            line = f"done   {who} in {took}  {metrics_text(event.metrics)}" + (f" ({event.message})" if event.message else "")
        elif kind == "end":
            line = f"FAILED {who} after {took}: {event.failure}" + (f" ({event.message})" if event.message else "")
        else:  # progress lines would flood a log file; the summary after each end says enough
            return
        click.echo(f"[{time.strftime('%H:%M:%S')}] {line}")
        if kind in ("end", "retry", "skip"):
            click.echo(f"           {self._summary()}")


def cloud_options(file: Path, profile: str | None, progress: "Progress", cancel_on_interrupt: bool):
    """What happens to the cloud jobs in flight on Ctrl-C: cancelled with
    --cancel-on-interrupt, else asked on a terminal, else left running."""
    from studyc.runtime.sky_executor import CloudOptions

    again = f"studyc run {file}{' --profile ' + profile if profile else ''} --cloud"

    def confirm_cancel(jobs: list[str]) -> bool:
        if progress.live:
            progress.live.stop()
        what = f"{len(jobs)} cloud job{'s' if len(jobs) != 1 else ''}"
        if cancel_on_interrupt:
            click.echo(f"cancelling {what} (--cancel-on-interrupt): {', '.join(jobs)}")
            return True
        if sys.stdin.isatty():
            try:
                if click.confirm(f"Cancel the {what} in flight? No leaves them running", default=False):
                    return True
            except click.Abort:
                pass
        else:
            click.echo("no terminal to ask whether to cancel the cloud jobs (--cancel-on-interrupt would)")
        click.echo(f"left {what} running: {', '.join(jobs)}\n  `{again}` follows them again; "
                   "`sky jobs cancel ID` stops one")
        return False

    return CloudOptions(confirm_cancel=confirm_cancel)
