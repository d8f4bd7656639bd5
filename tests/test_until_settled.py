"""`studyc run --until-settled` in process, with an executor that "trains" instantly: a
run's metric is its arm's true mean plus seeded Gaussian noise."""

from __future__ import annotations

import json
import random
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from studyc import orchestrate
from studyc.cli import main
from studyc.errors import RunError
from studyc.orchestrate_sequential import run_until_settled
from studyc.report.collect import Results
from studyc.report.judge import Judge
from studyc.report.sequential import judge, read_looks
from studyc.runtime.executor import Executor, JobState
from studyc.runtime.store import Store
from studyc.spec.loader import load

TRUE = {"far": 0.040, "near": 0.0600, "same_a": 0.050, "same_b": 0.0502}  # true means


class InstantExecutor(Executor):
    """Writes each run's metrics at submit; every run has ended by the first poll."""

    def __init__(self):
        self.submitted: list[tuple[str, int]] = []

    def submit(self, job):
        with open(job.env["STUDYC_CONFIG"]) as fh:
            config = json.load(fh)
        arm, seed = config["arm_name"], config["seed"]
        self.submitted.append((arm, seed))
        value = TRUE[arm] + random.Random(f"{arm}-{seed}").gauss(0, config["noise"])
        job.run_dir.mkdir(parents=True, exist_ok=True)
        (job.run_dir / "metrics.jsonl").write_text(json.dumps({"step": 0, "nrmse": value}) + "\n")
        return job

    def poll(self, handle):
        return JobState(running=False, exit_code=0)

    def cancel(self, handle, sig=None):
        pass


STUDY = """\
    study: seq
    run:
      command: "true"
      config: {{arm_name: far, noise: {noise}}}
      seeds: [0, 1, 2]
      resources: {{hours: 0.001}}
    metrics:
      nrmse: {{goal: min, spread: 0.002}}
    baselines:
      ref: {{nrmse: 0.0606}}
    arms:
      far: {{}}
      near: {{config: {{arm_name: near}}}}
      same_a: {{config: {{arm_name: same_a}}}}
      same_b: {{config: {{arm_name: same_b}}}}
    hypotheses:
      H1: {{claim: far is clearly below, check: far.nrmse <= ref.nrmse}}
      H2: {{claim: near sits on the threshold, check: near.nrmse <= ref.nrmse}}
      H3: {{claim: the pair is the same, check: "within(same_a.nrmse, same_b.nrmse, rel=0.05)"}}
    stats: {{design: {design}}}
    budget: {{parallel: 4}}
    """


@pytest.fixture
def study(write_study):
    def make(design: str = "confidence_sequence", noise: float = 0.002) -> object:
        return load(write_study(textwrap.dedent(STUDY.format(design=design, noise=noise))))
    return make


def test_adds_seeds_only_to_open_arms_and_stops_at_the_cap(tmp_path, study):
    store, executor, looks = Store(tmp_path / "store"), InstantExecutor(), []
    settled = run_until_settled(study(), store, max_seeds=8, batch=1, executor=executor, on_look=looks.append)
    seeds = {arm: sorted(s for a, s in executor.submitted if a == arm) for arm in TRUE}
    statuses = {h["hypothesis"]: h["status"] for h in looks[-1].hypotheses}
    assert statuses["H1"] == "PASS"
    # far (only H1 uses it) gets seeds until the look where H1 settles, then no more
    settled_at = next(look for look in looks if {h["hypothesis"]: h["status"] for h in look.hypotheses}["H1"] == "PASS")
    assert seeds["far"] == list(range(settled_at.seeds["far"])) and len(seeds["far"]) < 8
    assert "far" not in settled_at.adding
    assert seeds["near"] == list(range(8))  # H2 sits on its threshold: open up to --max-seeds
    assert statuses["H2"] == "INCONCLUSIVE"
    assert "--max-seeds 8 reached" in settled.reason
    # each look is recorded, and the verdict-side arms get one seed per look
    assert [look.number for look in looks] == list(range(1, len(looks) + 1))
    assert len(read_looks(store, "seq", None)) == len(looks) == 6


def test_stops_when_every_hypothesis_is_settled(tmp_path, study):
    store, executor = Store(tmp_path / "store"), InstantExecutor()
    settled = run_until_settled(study(noise=0.0002), store, max_seeds=20, batch=2, executor=executor)
    assert settled.reason == "every hypothesis is PASS or FAIL"
    assert len(executor.submitted) < 4 * 20  # far fewer runs than a fixed design at the cap


def test_a_rerun_keeps_the_seeds_it_added(tmp_path, study):
    store = Store(tmp_path / "store")
    run_until_settled(study(), store, max_seeds=5, batch=1, executor=InstantExecutor())
    again = InstantExecutor()
    settled = run_until_settled(study(), store, max_seeds=5, batch=1, executor=again)
    assert again.submitted == []  # everything it needs exists; nothing runs twice
    assert settled.looks[0].seeds["near"] == 5


def test_a_fixed_design_is_judged_on_the_sequence_once_seeds_were_added(tmp_path, study):
    loaded, store = study(design="fixed"), Store(tmp_path / "store")
    assert type(judge(loaded.study, Results(loaded.study, None, [], {}, {}, []), [])) is Judge  # before: fixed
    run_until_settled(loaded, store, max_seeds=4, executor=InstantExecutor())
    verdicts = orchestrate.report(loaded, store, tmp_path / "report").verdicts
    assert verdicts["stats"]["design"] == "confidence_sequence"
    assert verdicts["sequential"]["declared"] == "fixed" and verdicts["sequential"]["looks"] >= 2
    text = (tmp_path / "report" / "ablation_report.md").read_text()
    assert "**Design: confidence sequence**" in text and "declares `stats.design: fixed`" in text


def test_promotion_is_refused(tmp_path, write_study):
    text = textwrap.dedent(STUDY.format(design="confidence_sequence", noise=0.002)) + textwrap.dedent("""        stages:
          screen: {arms: all, promote: {top: 1}}
          final: {arms: promoted, needs: [screen]}
        """)
    with pytest.raises(RunError, match="promotion"):
        run_until_settled(load(write_study(text)), Store(tmp_path / "store"), max_seeds=5, executor=InstantExecutor())


def test_the_budget_stops_it(tmp_path, write_study):
    text = textwrap.dedent(STUDY.format(design="confidence_sequence", noise=0.002)).replace(
        "budget: {parallel: 4}", "budget: {parallel: 4, usd: 0.0002}\nprices: {CPU: 0.01}")
    loaded = load(write_study(text))
    settled = run_until_settled(loaded, Store(tmp_path / "store"), max_seeds=20, batch=1, executor=InstantExecutor())
    assert "over budget" in settled.reason


def test_cli_max_seeds_needs_until_settled(write_study):
    path = write_study(textwrap.dedent(STUDY.format(design="confidence_sequence", noise=0.002)))
    result = CliRunner().invoke(main, ["run", str(path), "--max-seeds", "4"])
    assert result.exit_code == 1 and "--max-seeds goes with --until-settled" in result.output
    result = CliRunner().invoke(main, ["run", str(path), "--until-settled", "--rerun", "far"])
    assert result.exit_code == 1 and "--until-settled does not go with --rerun" in result.output


def test_status_json_carries_the_latest_look(tmp_path, study):
    loaded, store = study(), Store(tmp_path / "store")
    settled = run_until_settled(loaded, store, max_seeds=4, batch=1, executor=InstantExecutor())
    result = CliRunner().invoke(main, ["status", str(loaded.path), "--json", "--store", str(tmp_path / "store")])
    assert result.exit_code == 0, result.output
    sequential = json.loads(result.output)["sequential"]
    assert sequential["looks"] == len(settled.looks)
    assert sequential["hypotheses"] == settled.looks[-1].hypotheses
    h2 = next(h for h in sequential["hypotheses"] if h["hypothesis"] == "H2")
    assert h2["open"] and h2["seeds_per_arm"] == 4 and "needs ≤ ref.nrmse = 0.0606" in h2["interval"]


def test_a_fixed_design_keeps_the_checks_hash_it_had_before_designs_existed(study, tmp_path):
    """Stores registered before `stats.design` existed must not see their checks 'changed'."""
    from studyc.compiler.plan import checks_hash

    pinned = tmp_path / "pinned.yaml"
    pinned.write_text(textwrap.dedent("""\
        study: pinned
        run:
          command: python train.py
          config: {lr: 0.001}
          seeds: [0, 1, 2]
        metrics:
          nrmse: {goal: min}
        baselines:
          ref: {nrmse: 0.0606}
        arms:
          a: {config: {lr: 0.01}}
        hypotheses:
          H1: {claim: a beats the reference, check: a.nrmse <= ref.nrmse}
        tiers: {minimum: champion.nrmse <= 0.07}
        decision:
          - {if: H1, then: promote}
          - else: analyse
        """))
    assert checks_hash(load(pinned).study) == "18a5be3107392487"  # as studyc 0.1.0 computed it, before this key
    assert checks_hash(study(design="fixed").study) != checks_hash(study().study)


def test_cli_until_settled_end_to_end(tmp_path, write_study, toy_trainer, monkeypatch):
    """Real runs of a tiny trainer: arm a settles (PASS) at 4 seeds and gets no more; b
    stays open on its threshold until --max-seeds; every look is logged."""
    import sys

    monkeypatch.chdir(tmp_path)
    path = write_study(textwrap.dedent(f"""\
        study: cli_seq
        run:
          command: {sys.executable} {toy_trainer}
          config: {{base: 0.05}}
          seeds: [0, 1, 2]
          resources: {{hours: 0.001}}
        metrics:
          nrmse: {{goal: min}}
        arms:
          a: {{}}
          b: {{config: {{base: 0.0575}}}}
        hypotheses:
          H1: {{claim: a is below, check: a.nrmse <= 0.0606}}
          H2: {{claim: b is below, check: b.nrmse <= 0.0606}}
        stats: {{design: confidence_sequence}}
        budget: {{parallel: 2}}
        """))
    result = CliRunner().invoke(main, ["run", str(path), "--until-settled", "--max-seeds", "5", "--batch", "1",
                                       "--store", str(tmp_path / "store"), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "look 1: seeds per arm a 3, b 3" in out and "  next: a +1, b +1" in out
    assert "look 2: seeds per arm a 4, b 4" in out and "settled: H1 PASS" in out and "  next: b +1" in out
    assert "H2 INCONCLUSIVE: b.nrmse = " in out and "(5 seeds per arm)" in out
    assert "stopped after 3 looks: --max-seeds 5 reached for the arms of H2" in out
    assert "reuse  " not in out  # each batch re-plans the runs before it: they are not logged again as reused
    report = (tmp_path / "out" / "ablation_report.md").read_text()
    assert "**Design: confidence sequence**" in report and "(3 looks recorded" in report
    assert "- H1: 4 seeds per arm; the sequence is the estimate ± 8.59 standard errors" in report
