"""Memory packing: which runs share the machine, when; impossible plans refused with the
arithmetic (seed 004: four 36 GB runs crashed a 94.5 GB machine by starting at once)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from studyc.compiler import packing
from studyc.compiler.plan import compile_plan
from studyc.errors import RunError
from studyc.spec.loader import load
from studyc.spec.model import Machine
from testkit.packing import FakeRun


def plan_of(path):
    return compile_plan(load(path))


def test_seed_004_runs_two_at_a_time_not_four(write_study, seed_004):
    plan = plan_of(write_study(seed_004))
    assert plan.schedule["peak_concurrent"] == 2
    starts = sorted(r.start_h for r in plan.runs)
    # Two 2.5 h runs sharing the GPU (default contention 1.0) each take 5 h: "8-12 hours
    # total (sequential)", as the seed says, not 5 h as if neither slowed the other.
    assert starts == [0.0, 0.0, 5.0, 5.0]
    assert plan.totals["wall_hours"] == pytest.approx(10.0)
    for t in (0.0, 5.0):
        together = [r for r in plan.runs if r.start_h <= t < r.end_h]
        assert sum(r.resources["vram_gb"] for r in together) <= 94.5
    # The machine is paid for while held: 10 h of one H100 at the built-in $3.00/h; each
    # run pays for its half of the GPU's time, so the runs add up to the same.
    assert plan.schedule["machine"]["usd"] == pytest.approx(30.0)
    assert plan.totals["usd"] == pytest.approx(30.0) and plan.totals["gpu_hours"] == pytest.approx(10.0)
    assert all(r.solo_hours == 2.5 and r.est_hours == pytest.approx(5.0) for r in plan.runs)


@pytest.mark.parametrize("contention, wall", [(0, 5.0), (0.5, 7.5), (1, 10.0), (2, 15.0)])
def test_contention_slows_runs_sharing_a_gpu(write_study, seed_004, contention, wall):
    text = seed_004.replace("memory_gb: 128}", f"memory_gb: 128, contention: {contention}}}")
    plan = plan_of(write_study(text))
    assert plan.totals["wall_hours"] == pytest.approx(wall)
    assert plan.schedule["contention"] == contention
    # Whatever the contention, the runs pay for the GPU time the machine is held.
    assert plan.totals["usd"] == pytest.approx(plan.schedule["machine"]["usd"])


def test_contention_leaves_runs_alone_on_their_gpus(write_study):
    path = write_study("""\
        study: g
        run: {command: x, seeds: [0, 1], resources: {accelerators: "A100-80GB:1", vram_gb: 60, hours: 1}}
        metrics: {m: {}}
        arms: {a: {}}
        machine: {accelerators: "A100-80GB:2", contention: 3}
        """)
    plan = plan_of(path)
    assert plan.totals["wall_hours"] == pytest.approx(1.0) and all(r.solo_hours is None for r in plan.runs)


def test_seed_004_demanding_four_at_once_is_refused_with_the_arithmetic(write_study, seed_004):
    path = write_study(seed_004.replace("budget: {parallel: 4}", "budget: {parallel: 4, together: true}"))
    with pytest.raises(RunError) as err:
        plan_of(path)
    message = err.value.message
    assert "4 runs at once" in message and "4 × 36 GB = 144 GB of GPU memory > 94.5 GB" in message
    assert "at most 2" in message and "budget.parallel: 2" in err.value.hint


def test_together_in_twos_fits_and_starts_in_waves(write_study, seed_004):
    plan = plan_of(write_study(seed_004.replace("budget: {parallel: 4}", "budget: {parallel: 2, together: true}")))
    assert sorted(r.start_h for r in plan.runs) == [0.0, 0.0, 5.0, 5.0]
    assert plan.schedule["together"] is True


@pytest.mark.parametrize("resources, words", [
    ('accelerators: "H100:1", vram_gb: 100', "needs 100 GB of GPU memory, but each of the machine's GPUs has 94.5 GB"),
    ('accelerators: "H100:2", vram_gb: 36', "needs 2 GPUs, but the machine has 1"),
    ('accelerators: "H100:1", vram_gb: 36, cpus: 32', "needs 32 CPUs, but the machine has 16"),
    ('accelerators: "H100:1", vram_gb: 36, memory_gb: 200', "needs 200 GB of memory, but the machine has 128 GB"),
])
def test_a_run_the_machine_cannot_hold_is_refused(write_study, seed_004, resources, words):
    path = write_study(seed_004.replace('accelerators: "H100:1", vram_gb: 36', resources))
    with pytest.raises(RunError) as err:
        plan_of(path)
    assert words in err.value.message and "arm wt2_k0p5" in err.value.message


def test_the_machine_knows_its_gpus_better_than_the_catalog(write_study, seed_004):
    # An H100 in the catalog has 80 GB; this machine's has 94.5 GB (an H100 NVL).
    plan = plan_of(write_study(seed_004.replace("vram_gb: 36,", "vram_gb: 90,")))
    assert plan.schedule["peak_concurrent"] == 1


def test_cpus_and_memory_limit_what_runs_at_once(write_study):
    path = write_study("""\
        study: c
        run: {command: x, seeds: [0, 1, 2, 3, 4, 5], resources: {cpus: 3, memory_gb: 10, hours: 1}}
        metrics: {m: {}}
        arms: {a: {}}
        machine: {gpus: 0, cpus: 8, memory_gb: 64}
        """)
    assert plan_of(path).schedule["peak_concurrent"] == 2  # 3 x 3 CPUs > 8
    path = write_study("""\
        study: c
        run: {command: x, seeds: [0, 1, 2, 3, 4, 5], resources: {cpus: 1, memory_gb: 30, hours: 1}}
        metrics: {m: {}}
        arms: {a: {}}
        machine: {gpus: 0, cpus: 8, memory_gb: 64}
        """)
    plan = plan_of(path)
    assert plan.schedule["peak_concurrent"] == 2 and plan.totals["wall_hours"] == pytest.approx(3.0)


def test_runs_spread_over_a_machines_gpus(write_study):
    path = write_study("""\
        study: g
        run: {command: x, seeds: [0, 1, 2, 3, 4], resources: {accelerators: "A100-80GB:1", vram_gb: 36, hours: 1}}
        metrics: {m: {}}
        arms: {a: {}}
        machine: {accelerators: "A100-80GB:2"}
        """)
    plan = plan_of(path)
    first = [r for r in plan.runs if r.start_h == 0]
    assert len(first) == 4 and sorted(g for r in first for g in r.gpus) == [0, 0, 1, 1]
    # Two runs to a GPU each take 2 h (contention 1.0); the fifth then has a GPU to itself.
    assert plan.totals["wall_hours"] == pytest.approx(3.0)


def test_gpus_of_unknown_memory_are_not_shared(write_study):
    path = write_study("""\
        study: g
        run: {command: x, seeds: [0, 1, 2], resources: {accelerators: "A100:1", hours: 1}}
        metrics: {m: {}}
        arms: {a: {}}
        machine: {gpus: 2, vram_gb: 40}
        """)
    assert plan_of(path).schedule["peak_concurrent"] == 2


def test_without_a_machine_only_parallel_limits(write_study):
    text = """\
        study: p
        run: {command: x, seeds: [0, 1, 2, 3, 4], resources: {accelerators: "A100:1", vram_gb: 36, hours: 2}}
        metrics: {m: {}}
        arms: {a: {}}
        budget: {parallel: 2}
        """
    plan = plan_of(write_study(text))
    assert plan.schedule["machine"] is None and plan.schedule["peak_concurrent"] == 2
    assert plan.totals["wall_hours"] == pytest.approx(6.0)
    assert {r.slot for r in plan.runs} == {0, 1}


def test_stages_run_one_after_another(write_study):
    path = write_study("""\
        study: s
        run: {command: x, resources: {hours: 1}}
        metrics: {m: {goal: min}}
        arms: {a: {}, b: {}}
        stages:
          first: {arms: [a, b], promote: {top: 1}}
          second: {arms: promoted, needs: [first], resources: {hours: 3}}
        """)
    plan = plan_of(path)
    first = [r for r in plan.runs if r.stage == "first"]
    second = [r for r in plan.runs if r.stage == "second"]
    assert len(second) == 1 and second[0].pending
    assert second[0].start_h == pytest.approx(max(r.end_h for r in first))
    assert plan.totals["wall_hours"] == pytest.approx(4.0)


# ---------------------------------------------------------------- properties


run_strategy = st.builds(
    lambda gpus, vram, cpus, memory, hours, stage: FakeRun(
        "a", stage, 0, {"accelerators": f"A100:{gpus}" if gpus else None, "vram_gb": vram, "cpus": cpus,
                        "memory_gb": memory}, hours),
    st.integers(0, 2), st.sampled_from([0, 10, 20, 36, 40]), st.integers(1, 4), st.sampled_from([0, 8, 16]),
    st.sampled_from([0.5, 1.0, 1.5, 2.0]), st.sampled_from(["s1", "s2"]))


@settings(max_examples=300, deadline=None)
@given(st.lists(run_strategy, min_size=1, max_size=25), st.integers(1, 8), st.integers(2, 4),
       st.sampled_from([40.0, 80.0]), st.booleans())
def test_packing_never_overfills_the_machine(runs, parallel, gpus, vram, with_limits):
    machine = Machine(gpus=gpus, vram_gb=vram, cpus=8 if with_limits else None, memory_gb=32 if with_limits else None)
    target = packing.Target.from_machine(machine)
    wall = packing.schedule(runs, ["s1", "s2"], parallel, target)
    times = sorted({r.start_h for r in runs})
    for t in times:
        active = [r for r in runs if r.start_h <= t < r.end_h]
        assert len(active) <= parallel
        for g in range(gpus):
            on_g = [r for r in active if g in r.gpus]
            if any(not r.resources["vram_gb"] for r in on_g):
                assert len(on_g) == 1  # unknown memory: the GPU is not shared
            assert sum(r.resources["vram_gb"] for r in on_g) <= vram
        if with_limits:
            assert sum(r.resources["cpus"] for r in active) <= 8
            assert sum(r.resources["memory_gb"] for r in active) <= 32
    for r in runs:
        assert len(r.gpus) == packing.Demand.of(r.resources).gpus == len(set(r.gpus))
        assert r.end_h == pytest.approx(r.start_h + r.est_hours)
    s1 = [r for r in runs if r.stage == "s1"]
    s2 = [r for r in runs if r.stage == "s2"]
    if s1 and s2:
        assert min(r.start_h for r in s2) >= max(r.end_h for r in s1) - 1e-9
    assert wall == pytest.approx(max(r.end_h for r in runs))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([0.5, 1.0, 2.0]), min_size=1, max_size=30), st.integers(1, 6))
def test_packing_without_a_machine_keeps_every_slot_busy(hours, parallel):
    runs = [FakeRun("a", "main", i, {"accelerators": "A100:1", "vram_gb": 10, "cpus": 1, "memory_gb": 0}, h)
            for i, h in enumerate(hours)]
    wall = packing.schedule(runs, ["main"], parallel, None)
    # List scheduling: never worse than the work spread perfectly plus the longest run.
    assert wall <= sum(hours) / parallel + max(hours) + 1e-9
    assert packing.peak_concurrent(runs) == min(parallel, len(runs))


def test_one_gpu_count_parser_and_the_oversubscription_rule():
    from studyc.compiler.resources import Demand, Occupancy, Target
    from studyc.spec.accelerators import parse

    assert parse(None) == (None, 0) and parse("H100") == ("H100", 1) and parse("A100-80GB:8") == ("A100-80GB", 8)
    assert Demand.of({"accelerators": "A100:2", "vram_gb": 10}).gpus == 2
    occupancy = Occupancy(Target((), 2, None))
    wide = Demand(0, 0.0, 4, 0.0)
    assert occupancy.place(wide) == ()  # more cores than the machine has: it runs, alone
    occupancy.take(wide, ())
    assert occupancy.place(Demand(0, 0.0, 1, 0.0)) is None
