"""Issue 14 item 1: one malformed line in a run's metrics.jsonl fails that run (class
`bad_metrics`, with the line number and why), never studyc; the other runs go on, nothing
stays running, and the report still renders."""

import json
import textwrap
import warnings

import pytest
from hypothesis import given, settings, strategies as st

from studyc import orchestrate
from studyc.runtime import metrics_file
from studyc.runtime.store import Store
from studyc.spec.loader import load

GOOD = b'{"step": 0, "nrmse": 0.1}\n'
BAD_LINES = {
    "list": b"[1]",
    "number": b"42",
    "string": b'"s"',
    "null_line": b"null",
    "utf8": b'{"step": 1, "nrmse": 0.1\xff}',
    "utf16": '{"step": 1, "nrmse": 0.1}'.encode("utf-16"),
    "long_number": b'{"step": 1, "nrmse": ' + b"9" * 5000 + b"}",
    "step_list": b'{"step": [1]}',
    "huge_step": b'{"step": ' + str(2**70).encode() + b', "nrmse": 0.1}',
    "deep": b"[" * 100000 + b"]" * 100000,
    "step_text": b'{"step": "abc", "nrmse": 0.1}',
    "bool_value": b'{"step": 1, "nrmse": true}',
    "not_json": b"loss=0.3",
}


def test_each_bad_line_fails_only_its_run(tmp_path, write_study):
    arms = []
    for name, line in BAD_LINES.items():
        (tmp_path / f"{name}.jsonl").write_bytes(GOOD + line + b"\n" + GOOD)
        arms.append(f"  {name}: {{config: {{payload: {name}.jsonl}}}}")
    (tmp_path / "good.jsonl").write_bytes(GOOD * 3)
    path = write_study(textwrap.dedent("""\
        study: badlines
        run:
          command: cat {config.payload} >> "$STUDYC_RUN_DIR/metrics.jsonl"
          config: {payload: good.jsonl}
          seeds: [0]
          resources: {hours: 0.001}
        metrics:
          nrmse: {goal: min}
        arms:
          good: {}
        """) + "\n".join(arms) + "\nbudget: {parallel: 4}\n")
    store = Store(tmp_path / "store")
    events = []
    orchestrate.execute(load(path), store, events.append)
    ends = {e.run.arm: e for e in events if e.kind == "end"}
    assert ends["good"].status == "done"
    for name in BAD_LINES:
        assert ends[name].status == "failed" and ends[name].failure == "bad_metrics", name
        assert "metrics.jsonl line 2" in ends[name].message, (name, ends[name].message)
    rows = store.study_runs("badlines", None)
    assert not [r for r in rows if r["status"] == "running"]
    assert all(r["failure"] == "bad_metrics" for r in rows if r["arm"] != "good")
    orchestrate.report(load(path), store, tmp_path / "report")  # renders: no crash on a bad run's records
    again = []
    orchestrate.execute(load(path), store, again.append)  # a rerun tries the failed runs again, and ends
    assert sum(e.failure == "bad_metrics" for e in again if e.kind == "end") == len(BAD_LINES)


def test_a_bad_line_seen_live_stops_the_run(tmp_path, write_study):
    path = write_study("""\
        study: live
        run:
          command: printf '[1]\\n' >> "$STUDYC_RUN_DIR/metrics.jsonl"; sleep 60
          seeds: [0]
          resources: {hours: 0.001}
        metrics:
          nrmse: {goal: min}
        arms:
          a: {}
        """)
    events = []
    orchestrate.execute(load(path), Store(tmp_path / "store"), events.append)
    end = next(e for e in events if e.kind == "end")
    assert end.failure == "bad_metrics"
    assert "line 1" in end.message


def test_a_torn_last_line_is_skipped_not_a_failure():
    parsed = metrics_file.parse(GOOD + b'{"step": 1, "nr')
    assert parsed.bad is None and len(parsed.records) == 1


def test_a_runaway_metrics_file_is_cut_at_its_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(metrics_file, "MAX_FILE_BYTES", len(GOOD) * 10 + 5)
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(GOOD * 100)
    parsed = metrics_file.read(path)
    assert len(parsed.records) == 10 and parsed.bad.line == 11 and "larger than" in parsed.bad.why


def test_records_before_the_bad_line_are_kept():
    parsed = metrics_file.parse(GOOD + GOOD + b"[1]\n" + GOOD)
    assert len(parsed.records) == 2 and parsed.bad.line == 3
    assert "not an object" in parsed.bad.why


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_give_records_or_a_bad_line(data):
    parsed = metrics_file.parse(data)
    for record in parsed.records:
        assert isinstance(record, dict)
        assert isinstance(record.get("step", 0), int)
        assert all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in record.values())


_values = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=5),
                    st.lists(st.integers(), max_size=2))


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=8), _values, max_size=4))
def test_any_json_object_is_accepted_only_when_it_is_a_record(record):
    line = json.dumps(record).encode()
    try:
        parsed = metrics_file.parse_line(line, 1)
    except metrics_file.BadLine as bad:
        assert bad.line == 1 and bad.why
        return
    assert all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in parsed.values())
    store_step = parsed.get("step", 0)
    assert -(2**63) <= store_step < 2**63


def test_values_at_the_edge_of_float_range_are_judged_and_reported(tmp_path, write_study):
    """Finite values whose sum or spread leave float range (1e308 across seeds) give a
    mean, no interval (null, '—'), a verdict and a report; never an overflow error."""
    values = {"huge": ["1e308"] * 3, "spread": ["1e308", "-1e308", "1.5e308"], "small": ["0.5", "0.5", "0.5"]}
    for arm, per_seed in values.items():
        for seed, value in enumerate(per_seed):
            (tmp_path / f"{arm}{seed}.jsonl").write_text(f'{{"nrmse": {value}}}\n')
    path = write_study("""\
        study: edge
        run:
          command: cat {config.arm}{seed}.jsonl >> "$STUDYC_RUN_DIR/metrics.jsonl"
          config: {arm: huge}
          seeds: [0, 1, 2]
          resources: {hours: 0.001}
        metrics:
          nrmse: {goal: min}
        arms:
          huge: {}
          spread: {config: {arm: spread}}
          small: {config: {arm: small}}
        hypotheses:
          H1: {claim: small beats huge, check: small.nrmse < huge.nrmse}
          H2: {claim: the spread is below huge, check: spread.nrmse < huge.nrmse}
        budget: {parallel: 2}
        """)
    store = Store(tmp_path / "store")
    orchestrate.execute(load(path), store, lambda event: None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing printed about overflows either
        result = orchestrate.report(load(path), store, tmp_path / "report")
    assert result.verdicts["hypotheses"]["H1"]["status"] == "PASS"
    h2 = result.verdicts["hypotheses"]["H2"]
    assert h2["status"] == "INCONCLUSIVE", h2  # a spread past float range is unbounded, not none
    body = json.loads((tmp_path / "report" / "results.json").read_text(), parse_constant=pytest.fail)
    huge, spread = (body["arms"][a]["metrics"]["nrmse"] for a in ("huge", "spread"))
    assert (huge["mean"], huge["n"], huge["ci_lo"]) == (1e308, 3, 1e308)
    assert spread["mean"] == pytest.approx(5e307) and spread["std"] is None and spread["ci_lo"] is None
    assert "| spread |" in (tmp_path / "report" / "ablation_report.md").read_text()
    assert (tmp_path / "report" / "plots" / "nrmse_per_arm.png").exists()
