"""What someone watching a study wants to know, kept up to date from the scheduler's
events: how many runs are queued, running, done, failed; each run's latest metrics; the
money and GPU time spent; and when it will end. The CLI only draws it."""

from __future__ import annotations

import heapq
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from studyc.compiler import packing
from studyc.compiler.plan import RunPlan
from studyc.compiler.resources import Demand, Target
from studyc.runtime.scheduler import Event, host_target

ENDED = ("done", "cached", "failed", "skipped")


@dataclass
class RunView:
    run: RunPlan
    status: str = "queued"  # queued, running, done, cached, failed, skipped
    attempt: int = 0
    started: float | None = None  # clock time of the current attempt's start
    ended: float | None = None
    failure: str | None = None
    latest: dict[str, float] = field(default_factory=dict)
    note: str | None = None

    def elapsed(self, now: float) -> float | None:
        return None if self.started is None else (self.ended or now) - self.started


class Tracker:
    """Folds scheduler events into the state of the study.

    The ETA replays the remaining runs on the study's parallel slots, a stage starting when
    the stages it waits for (``needs``; default: the one before) have ended, with each
    run's planned hours scaled by how long the runs finished so far really took against
    their estimates.
    """

    def __init__(self, runs: list[RunPlan], parallel: int, clock: Callable[[], float] = time.monotonic,
                 cpus: int | None = None, needs: dict[str, list[str]] | None = None, target: Target | None = None,
                 remote: bool = False):
        self.clock = clock
        self.began = clock()
        self.views: dict[str, RunView] = {r.id: RunView(r) for r in runs if not r.pending}
        # Slots for runs a gate will promote: placeholders until the real runs appear.
        self.placeholders: list[RunPlan] = [r for r in runs if r.pending]
        self.stage_order = list(dict.fromkeys(r.stage for r in runs))
        self.needs = needs if needs is not None else packing.chain(self.stage_order)
        # As many at once as the scheduler places the largest run on this machine (the same
        # resource model); on the cloud each run has a machine of its own.
        demands = {Demand.of(r.resources) for r in runs}
        widest = max(demands, key=lambda d: (d.gpus, d.cpus, d.memory_gb), default=None)
        if remote or widest is None:
            self.slots = max(1, parallel)
        else:
            target = target or host_target(need_gpus=widest.gpus > 0, cpus=cpus)
            self.slots = target.capacity(widest, parallel)
        self.usd = 0.0  # spent by attempts that ended
        self.gpu_hours = 0.0
        self.observed_s = 0.0  # real and estimated seconds of attempts that ran to the end
        self.estimated_s = 0.0

    # ------------------------------------------------------------ events

    def update(self, event: Event) -> RunView:
        run = event.run
        view = self.views.get(run.id)
        if view is None:
            view = self.views[run.id] = RunView(run)
            self._drop_placeholder(run.stage)
        now = self.clock()
        kind = event.kind
        if kind == "start":
            view.status, view.attempt, view.started, view.ended = "running", event.attempt, now, None
            view.failure, view.note = None, event.message
        elif kind == "progress":
            view.latest = dict(event.metrics)
        elif kind in ("end", "retry"):
            self.usd += event.usd
            self.gpu_hours += event.gpu_hours
            if view.started is not None and event.failure is None:
                self.observed_s += now - view.started
                self.estimated_s += run.est_hours * 3600
            view.failure = event.failure
            if kind == "end":
                view.status, view.ended = event.status or "done", now
                view.latest.update(event.metrics)
            else:
                view.status, view.started, view.note = "queued", None, event.message
        elif kind == "cached":
            view.status, view.note = "cached", event.message
        elif kind == "skip":
            view.status, view.note = "skipped", event.message
        elif kind == "wait":
            view.status, view.note = "running", event.message
        elif kind == "interrupted":
            view.status, view.started = "queued", None
        return view

    def _drop_placeholder(self, stage: str) -> None:
        for i, run in enumerate(self.placeholders):
            if run.stage == stage:
                del self.placeholders[i]
                return

    # ------------------------------------------------------------ figures

    @property
    def total(self) -> int:
        return len(self.views) + len(self.placeholders)

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(("queued", "running", "done", "cached", "failed", "skipped"), 0)
        for view in list(self.views.values()):
            counts[view.status] += 1
        counts["queued"] += len(self.placeholders)
        return counts

    def elapsed(self) -> float:
        return self.clock() - self.began

    def speed(self) -> float:
        """Real over estimated duration, from the runs that finished (1 before any)."""
        return self.observed_s / self.estimated_s if self.estimated_s > 0 else 1.0

    def spent(self) -> tuple[float, float]:
        """Dollars and GPU-hours so far, the running attempts included."""
        now = self.clock()
        usd, gpu_hours = self.usd, self.gpu_hours
        for view in list(self.views.values()):
            if view.status == "running" and view.started is not None:
                hours = (now - view.started) / 3600
                run = view.run
                usd += hours * run.usd_per_hour
                gpu_hours += hours * (run.gpu_hours / run.est_hours if run.est_hours else 0.0)
        return usd, gpu_hours

    def eta_s(self) -> float | None:
        """Seconds until every run has ended, or None when nothing is left."""
        now, speed = self.clock(), self.speed()
        left = [v for v in list(self.views.values()) if v.status not in ENDED]
        if not left and not self.placeholders:
            return None
        # Running runs hold slots until their (scaled) estimate runs out.
        slots = []
        ends: dict[str, float] = {}  # stage -> when its last run is expected to end
        for view in left:
            if view.status == "running" and view.started is not None:
                expected = view.run.est_hours * 3600 * speed
                slots.append(max(expected - (now - view.started), 0.0))
                ends[view.run.stage] = max(ends.get(view.run.stage, 0.0), slots[-1])
        slots.sort()
        slots = slots[-self.slots:] if len(slots) > self.slots else slots + [0.0] * (self.slots - len(slots))
        heapq.heapify(slots)
        queued = [v.run for v in left if v.status == "queued"] + self.placeholders
        order = {stage: i for i, stage in enumerate(self.stage_order)}
        queued.sort(key=lambda r: order.get(r.stage, len(order)))
        finish = max(slots)
        for run in queued:  # a stage starts when the stages it waits for have ended
            ready = max((ends.get(n, 0.0) for n in self.needs.get(run.stage, [])), default=0.0)
            start = max(heapq.heappop(slots), ready)
            end = start + run.est_hours * 3600 * speed
            finish = max(finish, end)
            ends[run.stage] = max(ends.get(run.stage, 0.0), end)
            heapq.heappush(slots, end)
        return finish

    def rows(self, limit: int) -> tuple[list[RunView], int]:
        """The runs worth showing: running first, then failed, then the latest to end;
        and how many were left out."""
        views = list(self.views.values())
        rank = {"running": 0, "failed": 1}
        chosen = sorted(views, key=lambda v: (rank.get(v.status, 2), -(v.ended or v.started or 0)))
        chosen = [v for v in chosen if v.status != "queued"][:limit]
        return chosen, len(views) - len(chosen)


def duration_text(seconds: float) -> str:
    """'4.2 s', '42 s', '3 min 05 s', '2 h 07 min'."""
    if seconds < 9.95:
        return f"{max(seconds, 0.0):.1f} s"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def metrics_text(metrics: dict[str, Any], limit: int = 4) -> str:
    shown = [(k, v) for k, v in metrics.items() if k not in ("t", "step")][:limit]
    return " ".join(f"{k}={v:.4g}" for k, v in shown)
