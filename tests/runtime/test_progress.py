"""The progress tracker: counts, spend and an ETA from the plan's estimates corrected by
the durations observed so far."""

from __future__ import annotations

import pytest

from studyc.compiler.plan import RunPlan
from studyc.runtime.progress import Tracker, duration_text
from studyc.runtime.scheduler import Event


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def plan_run(i: int, hours: float = 0.01, stage: str = "main", gpus: int = 0, usd_per_hour: float = 1.0,
             pending: bool = False) -> RunPlan:
    resources = {"accelerators": f"A100:{gpus}" if gpus else None, "vram_gb": 0, "cpus": 1}
    return RunPlan(f"r{i}", f"arm{i}", stage, 0, "true", "true", {}, resources, {}, hours, hours * usd_per_hour,
                   hours * gpus, pending=pending)


def test_eta_before_any_run_ends_follows_the_plan():
    clock = Clock()
    runs = [plan_run(i, hours=0.01) for i in range(4)]  # 36 s each
    tracker = Tracker(runs, parallel=2, clock=clock, cpus=64)
    assert tracker.eta_s() == pytest.approx(72)
    tracker.update(Event("start", runs[0], attempt=1))
    tracker.update(Event("start", runs[1], attempt=1))
    clock.now += 10
    assert tracker.eta_s() == pytest.approx(26 + 36)


def test_eta_learns_from_observed_durations():
    clock = Clock()
    runs = [plan_run(i, hours=0.01) for i in range(5)]
    tracker = Tracker(runs, parallel=1, clock=clock, cpus=64)
    tracker.update(Event("start", runs[0], attempt=1))
    clock.now += 18  # half the 36 s estimate
    tracker.update(Event("end", runs[0], status="done", attempt=1))
    assert tracker.speed() == pytest.approx(0.5)
    assert tracker.eta_s() == pytest.approx(4 * 18)
    counts = tracker.counts()
    assert counts["done"] == 1 and counts["queued"] == 4


def test_stages_run_one_after_the_other():
    clock = Clock()
    runs = [plan_run(0, 0.01, "screen"), plan_run(1, 0.02, "screen"), plan_run(2, 0.01, "full")]
    tracker = Tracker(runs, parallel=4, clock=clock, cpus=64)
    # screen ends when its longest run does (72 s); full starts then.
    assert tracker.eta_s() == pytest.approx(72 + 36)


def test_stages_side_by_side_share_the_slots():
    clock = Clock()
    runs = [plan_run(0, 0.01, "a"), plan_run(1, 0.02, "b"), plan_run(2, 0.01, "full")]
    # a and b need nothing and run side by side; full needs a only: it starts at 36 s.
    tracker = Tracker(runs, parallel=4, clock=clock, cpus=64, needs={"a": [], "b": [], "full": ["a"]})
    assert tracker.eta_s() == pytest.approx(72)
    tracker = Tracker(runs, parallel=4, clock=clock, cpus=64, needs={"a": [], "b": [], "full": ["a", "b"]})
    assert tracker.eta_s() == pytest.approx(72 + 36)


def test_promoted_placeholders_count_until_the_real_runs_appear():
    clock = Clock()
    runs = [plan_run(0, 0.01, "screen"), plan_run(9, 0.01, "full", pending=True)]
    tracker = Tracker(runs, parallel=1, clock=clock, cpus=64)
    assert tracker.total == 2 and tracker.counts()["queued"] == 2
    promoted = plan_run(5, 0.01, "full")
    tracker.update(Event("start", promoted, attempt=1))
    assert tracker.total == 2 and tracker.counts()["running"] == 1


def test_spend_counts_ended_attempts_and_running_time():
    clock = Clock()
    runs = [plan_run(0, hours=1.0, gpus=2, usd_per_hour=4.0), plan_run(1, hours=1.0, gpus=2, usd_per_hour=4.0)]
    tracker = Tracker(runs, parallel=2, clock=clock, cpus=64)
    tracker.update(Event("start", runs[0], attempt=1))
    tracker.update(Event("end", runs[0], status="failed", failure="oom", usd=0.5, gpu_hours=0.25))
    tracker.update(Event("start", runs[1], attempt=1))
    clock.now += 1800  # half an hour at $4/h on 2 GPUs
    usd, gpu_hours = tracker.spent()
    assert usd == pytest.approx(0.5 + 2.0)
    assert gpu_hours == pytest.approx(0.25 + 1.0)
    assert tracker.counts()["failed"] == 1


def test_nothing_left_means_no_eta():
    clock = Clock()
    runs = [plan_run(0)]
    tracker = Tracker(runs, parallel=1, clock=clock, cpus=64)
    tracker.update(Event("cached", runs[0], status="done"))
    assert tracker.eta_s() is None


@pytest.mark.parametrize("seconds, text", [(4.24, "4.2 s"), (42, "42 s"), (185, "3 min 05 s"), (7620, "2 h 07 min")])
def test_durations_carry_units(seconds, text):
    assert duration_text(seconds) == text


def test_eta_slots_follow_the_resource_model():
    from studyc.compiler.resources import Target

    gpu_runs = [RunPlan(f"g{i}", "a", "main", i, "true", "true", {},
                        {"accelerators": "A100:1", "vram_gb": 20, "cpus": 1}, {}, 0.01, 0.01, 0.01) for i in range(8)]
    two_gpus = Target((40.0, 40.0), 64, None)
    assert Tracker(gpu_runs, parallel=8, target=two_gpus).slots == 4  # two 20 GB runs on each 40 GB GPU
    assert Tracker(gpu_runs, parallel=3, target=two_gpus).slots == 3  # the study's parallelism caps it
    assert Tracker(gpu_runs, parallel=8, remote=True).slots == 8  # a machine per cloud job
    wide = [plan_run(i) for i in range(4)]
    for run in wide:
        run.resources["cpus"] = 4
    assert Tracker(wide, parallel=4, cpus=2).slots == 1  # more cores than the machine has: alone
    assert Tracker(wide, parallel=4, cpus=8).slots == 2
