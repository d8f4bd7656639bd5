"""The five seed studies: their full-scale plans stay inside the seeds' own cost and time
figures, and their `# CONTRACT:` blocks switch on mechanically (docs/seeds.md)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from studyc.cli import main

STUDIES = Path(__file__).resolve().parents[2] / "studies"


def plan_totals(study: str, *args: str) -> dict:
    result = CliRunner().invoke(main, ["plan", str(STUDIES / study), "--json", *args])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["budget"]["ok"], data["budget"]
    return data["totals"]


@pytest.mark.parametrize(
    "study, args, usd, wall_hours",
    [
        # 000 Option A "~$4.50", parallel; Option B "~$4.00", "2-3 hours", sequential
        ("burgers_phase3_ablation.yaml", (), (4.0, 4.5), (0.9, 1.0)),
        ("burgers_phase3_ablation.yaml", ("--profile", "sequential"), (4.0, 4.5), (2.0, 3.0)),
        # 003 "Estimated duration: 12-15 minutes"
        ("scaled_model_speedup.yaml", (), (0.0, 1.0), (12 / 60, 15 / 60)),
        # 004 "8-12 hours total (sequential)"; Option B "~2-4 hours" on a local GPU
        ("kuramoto_phasegpt.yaml", (), (0.0, 40.0), (8.0, 12.0)),
        ("kuramoto_phasegpt.yaml", ("--profile", "local_gpu"), (0.0, 0.0), (2.0, 4.0)),
        # 002 "~$33" for the sweep, plus the baseline re-run and full-eval; the 16-20 h
        # wall-clock needs the stage graph (until then the stages run in order)
        ("burgers_sota_sweep.yaml", (), (33.0, 40.0), (0.0, 43.0)),
        # 001 three new 3 h runs, one after another (the 2-3 h benchmark comes with
        # evaluation stages; 1a's 3 h are spent): "TOTAL ~14h"
        ("cross_model_ablations.yaml", (), (100.0, 170.0), (9.0, 9.0)),
    ],
)
def test_full_scale_plans_fall_in_the_seeds_ranges(study, args, usd, wall_hours):
    totals = plan_totals(study, *args)
    assert usd[0] <= totals["usd"] <= usd[1]
    assert wall_hours[0] - 1e-6 <= totals["wall_hours"] <= wall_hours[1] + 1e-6


def test_004_four_36gb_runs_never_share_the_94gb_gpu_beyond_two():
    result = CliRunner().invoke(main, ["plan", str(STUDIES / "kuramoto_phasegpt.yaml"), "--json"])
    runs = json.loads(result.output)["runs"]
    for run in runs:  # at no run's start are more than two 36 GB runs on the GPU
        overlapping = [r for r in runs if r["start_h"] <= run["start_h"] < r["end_h"]]
        assert sum(36 for _ in overlapping) <= 94.5


# ---------------------------------------------------------------- CONTRACT blocks

BLOCK = re.compile(r"^(?P<indent>\s*)# CONTRACT: (?P<first>.*)$")


def switch_on(text: str) -> tuple[str, list[tuple[str, str]]]:
    """The docs/seeds.md rule: uncomment each block; unless its first line ends with
    `# adds`, delete the node directly below it. Returns the text and, per replacement,
    (the block's first key, the replaced node's first key)."""
    lines, out, replaced, i = text.split("\n"), [], [], 0
    while i < len(lines):
        m = BLOCK.match(lines[i])
        if not m:
            out.append(lines[i])
            i += 1
            continue
        indent, first = m["indent"], m["first"]
        out.append(indent + first)
        i += 1
        while i < len(lines) and lines[i].startswith(indent + "#  ") and not BLOCK.match(lines[i]):
            out.append(indent + lines[i][len(indent) + 2 :])
            i += 1
        if first.rstrip().endswith("# adds"):
            continue
        node = lines[i]
        assert len(node) - len(node.lstrip()) == len(indent), f"no node at the block's indentation below: {node!r}"
        replaced.append((key(first), key(node.strip())))
        i += 1
        while i < len(lines) and lines[i].strip() and len(lines[i]) - len(lines[i].lstrip()) > len(indent):
            i += 1
    return "\n".join(out), replaced


def key(line: str) -> str:
    return line.removeprefix("- ").lstrip("{").split(":")[0].strip()


@pytest.mark.parametrize("path", sorted(STUDIES.glob("*.yaml")), ids=lambda p: p.name)
def test_contract_blocks_switch_on_mechanically(path):
    text = path.read_text()
    switched, replaced = switch_on(text)
    assert not any(BLOCK.match(line) for line in switched.split("\n"))
    for block_key, node_key in replaced:  # each block replaces the node it stands for
        assert block_key == node_key
    before, after = yaml.safe_load(text), yaml.safe_load(switched)
    assert after["study"] == before["study"] and set(after) >= set(before)


def test_switching_on_gives_the_faithful_forms():
    sweep, _ = switch_on((STUDIES / "burgers_sota_sweep.yaml").read_text())
    data = yaml.safe_load(sweep)
    assert data["stages"]["full_eval"]["evaluate"] == "python -m examples.burgers.evaluate"
    assert "noworse(conservation_gap, baseline.conservation_gap, margin=0.0)" in data["stages"]["round_a"]["gate"]
    assert data["stages"]["round_b"]["gate"] == data["stages"]["round_a"]["gate"]  # the anchor follows
    assert data["budget"]["wall"] == "20h"
    claims = yaml.safe_load(switch_on((STUDIES / "cross_model_ablations.yaml").read_text())[0])["claims"]
    assert claims["Stability fixes work"]["check"].startswith("1a_stable_64tok.final_acc > 0.70")
    speedup = yaml.safe_load(switch_on((STUDIES / "scaled_model_speedup.yaml").read_text())[0])
    assert speedup["decision"][0]["if"] == "failed(baseline) or failed(optimized)"
    assert set(speedup["scenarios"]) == {"optimistic", "conservative", "worst"}
    phase = yaml.safe_load(switch_on((STUDIES / "kuramoto_phasegpt.yaml").read_text())[0])
    assert phase["stages"]["test_run"]["smoke"] is True and phase["machine"]["contention"] == 1.0
