"""Issue 14 item 9: a retry never runs with a NaN, a boolean or a silently clamped value."""


import pytest

from studyc import orchestrate
from studyc.runtime.failures import EditError, apply_edits
from studyc.runtime.store import Store
from studyc.spec.loader import load
from testkit.studies import one_run_study


@pytest.mark.parametrize("config, edits, why", [
    ({"bs": 1}, {"bs": "bs // 2"}, "cannot go lower"),
    ({"bs": 4, "lr": 0.0}, {"bs": "bs / lr"}, "not a finite number"),
    ({"lr": 0.1}, {"lr": "lr > 0"}, "not a finite number"),
    ({"lr": 0.1, "flag": True}, {"lr": "lr * flag"}, "'flag' is True, not a number"),
    ({"lr": 0.1, "opt": "adam"}, {"lr": "lr * opt"}, "'opt' is 'adam', not a number"),
    ({"lr": 1e300}, {"lr": "lr * 1e300"}, "not a finite number"),
])
def test_an_edit_that_cannot_give_a_usable_value_refuses(config, edits, why):
    with pytest.raises(EditError, match=why):
        apply_edits(config, edits)


def test_whole_numbers_stay_whole():
    assert apply_edits({"bs": 3}, {"bs": "bs * 0.75"}) == {"bs": 2}
    assert apply_edits({"lr": 0.1}, {"lr": "lr * 0.5"}) == {"lr": 0.05}


def test_the_run_ends_with_its_failure_when_the_playbook_runs_out_of_room(tmp_path, write_study):
    trainer = tmp_path / "oom.py"
    trainer.write_text("import sys\nprint('CUDA out of memory', file=sys.stderr)\nsys.exit(1)\n")
    path = write_study(one_run_study("clamp", f"python {trainer}", config="{batch_size: 2}",
                                     extra="on_failure: {oom: {retries: 5, config: {batch_size: 'batch_size // 2'}}}\n"))
    store = Store(tmp_path / "store")
    events = []
    orchestrate.execute(load(path), store, events.append)
    starts = [e for e in events if e.kind == "start"]
    assert len(starts) == 2  # batch_size 2, then 1; never 1 again
    end = next(e for e in events if e.kind == "end")
    assert end.failure == "oom" and "not retried" in end.message
    configs = [a["config"] for a in store.attempts(end.run.id)]
    assert configs == ['{"batch_size": 2, "seed": 0}', '{"batch_size": 1, "seed": 0}']
