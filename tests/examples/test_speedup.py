"""Speedup example: the two attention paths agree, and baseline/optimized runs are comparable.

"""

from __future__ import annotations

import json
import math

import pytest

torch = pytest.importorskip("torch")


from examples.speedup import train as trainer  # noqa: E402,F401  (run_main runs trainer.main)
from examples.speedup.data import make_copy_data  # noqa: E402
from examples.speedup.model import GPT, ModelConfig  # noqa: E402

torch.set_num_threads(1)

TOY = {
    "n_layer": 1,
    "n_head": 2,
    "n_embd": 32,
    "seq_half": 8,
    "vocab": 8,
    "num_samples": 128,
    "val_samples": 64,
    "epochs": 2,
    "batch_size": 16,
    "baseline_micro_batch": 4,
    "optimized_micro_batch": 16,
    "lr": 3e-3,
    "device": "cpu",
}
FINAL = ("total_time", "avg_epoch_time", "final_loss", "throughput", "samples_per_s", "params", "peak_mem_mb")



def test_copy_task_targets_are_the_copied_half():
    x, y = make_copy_data(5, 6, 10, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (5, 12)
    assert (y[:, :6] == -100).all()
    assert torch.equal(y[:, 6:], x[:, :6])  # the second half repeats the first
    assert (x[:, 6] == 10).all()  # separator


def test_manual_and_sdpa_attention_compute_the_same_function():
    torch.manual_seed(0)
    manual = GPT(ModelConfig(vocab_size=9, block_size=16, n_layer=2, n_head=2, n_embd=16, attention="manual"))
    fused = GPT(ModelConfig(vocab_size=9, block_size=16, n_layer=2, n_head=2, n_embd=16, attention="sdpa"))
    fused.load_state_dict(manual.state_dict())
    idx = torch.randint(9, (3, 16))
    lm, _ = manual(idx)
    lf, _ = fused(idx)
    assert lm.shape == (3, 16, 9)
    assert torch.allclose(lm, lf, atol=1e-5)
    with pytest.raises(ValueError):
        GPT(ModelConfig(vocab_size=9, block_size=16, attention="flash"))


def test_gradient_accumulation_matches_one_big_batch():
    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=9, block_size=16, n_layer=1, n_head=2, n_embd=16))
    x, y = make_copy_data(8, 8, 8, torch.Generator().manual_seed(1))
    model(x, y)[1].backward()
    full = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    for xm, ym in zip(x.split(2), y.split(2)):
        (model(xm, ym)[1] / 4).backward()
    assert all(torch.allclose(a, p.grad, atol=1e-6) for a, p in zip(full, model.parameters()))


def test_both_modes_log_all_metrics_same_params_and_comparable_loss(monkeypatch, tmp_path, run_main):
    base, base_records = run_main("baseline", mode="baseline")
    opt, opt_records = run_main("optimized", mode="optimized")
    for records in (base_records, opt_records):
        epochs = [r for r in records if "epoch_time" in r]
        assert len(epochs) == TOY["epochs"]
        assert all({"loss", "epoch_time", "throughput"} <= set(r) for r in epochs)
        last = records[-1]
        for name in FINAL:
            assert name in last and math.isfinite(last[name]) and last[name] > 0, name
    assert base["params"] == opt["params"]
    assert abs(base["final_loss"] - opt["final_loss"]) < 1e-3  # same data, init and steps
    assert base["final_loss"] < math.log(TOY["vocab"])  # it learned something
    for b, o in zip(base_records, opt_records):  # per-epoch losses agree too
        if "loss" in b and "epoch_time" in b:
            assert b["loss"] == pytest.approx(o["loss"], abs=1e-3)


def test_same_seed_same_loss_different_seed_different_loss(monkeypatch, tmp_path, run_main):
    a, _ = run_main("a", mode="optimized", seed=0, epochs=1)
    b, _ = run_main("b", mode="optimized", seed=0, epochs=1)
    c, _ = run_main("c", mode="optimized", seed=1, epochs=1)
    assert a["final_loss"] == b["final_loss"]
    assert c["final_loss"] != a["final_loss"]


def test_bad_settings_are_rejected(monkeypatch, tmp_path, run_main):
    with pytest.raises(SystemExit):
        run_main("mode", mode="fast")
    with pytest.raises(SystemExit):
        run_main("micro", baseline_micro_batch=5)


def test_nan_loss_exits_nonzero(monkeypatch, tmp_path, capsys, run_main):
    real_forward = GPT.forward

    def poisoned(self, idx, targets=None):
        logits, loss = real_forward(self, idx, targets)
        return logits, (loss * float("nan") if loss is not None else loss)

    monkeypatch.setattr(GPT, "forward", poisoned)
    with pytest.raises(SystemExit) as exc:
        run_main("nan", epochs=1)
    assert exc.value.code not in (0, None)
    assert "nan" in capsys.readouterr().err.lower()


def test_ff_dim_and_low_rank_compression_set_the_feed_forward_shape():
    def ff_params(**kw) -> int:
        model = GPT(ModelConfig(vocab_size=9, block_size=16, n_layer=1, n_head=2, n_embd=16, **kw))
        block = model.blocks[0]
        return sum(p.numel() for m in (block.fc, block.out) for p in m.parameters())

    assert ff_params() == 2 * 16 * 64 + 64 + 16  # default width 4 * n_embd
    assert ff_params(ff_dim=32) == 2 * 16 * 32 + 32 + 16  # the seed's FF dim is 2 x n_embd
    # rank 4: 16 -> 4 -> 32 and 32 -> 4 -> 16, biases on the outer layers only
    assert ff_params(ff_dim=32, ff_rank=4) == (16 * 4 + 4 * 32 + 32) + (32 * 4 + 4 * 16 + 16)
    assert ff_params(ff_dim=32, ff_rank=16) == ff_params(ff_dim=32)  # full rank stays dense


def test_kernel_level_zero_is_the_baseline_and_compression_changes_only_the_optimized_mode(run_main):
    base, _ = run_main("base", mode="baseline", compression_ratio=0.25)
    level0, _ = run_main("level0", mode="optimized", kernel_level=0)
    compressed, _ = run_main("compressed", mode="optimized", compression_ratio=0.25)
    assert level0["final_loss"] == base["final_loss"]  # same kernels, same steps: same numbers
    assert base["params"] == level0["params"]  # the baseline ignores compression_ratio
    assert compressed["params"] < base["params"]
    assert compressed["final_loss"] != base["final_loss"] and math.isfinite(compressed["final_loss"])


def test_each_run_writes_its_section_of_the_comparison_json(tmp_path, run_main):
    final, records = run_main("solo", mode="optimized")
    report = json.loads((tmp_path / "solo" / trainer.COMPARISON_FILE).read_text())
    assert set(report) == {"stage", "model", "optimized"}
    section = report["optimized"]
    assert section["losses"] == [r["loss"] for r in records if "epoch_time" in r]
    assert section["total_time"] == final["total_time"] and section["final_loss"] == final["final_loss"]


def test_mode_both_trains_baseline_then_optimized_and_judges_the_seed_criteria(tmp_path, run_main):
    final, records = run_main("both", mode="both")
    report = json.loads((tmp_path / "both" / trainer.COMPARISON_FILE).read_text())
    base, opt, verdict = report["baseline"], report["optimized"], report["comparison"]
    assert len(base["losses"]) == len(opt["losses"]) == TOY["epochs"]
    for mode in ("baseline", "optimized"):  # both trained models saved, as the seed's script does
        ckpt = torch.load(tmp_path / "both" / "checkpoints" / f"{mode}.pt", weights_only=False)
        assert ckpt["final_loss"] == report[mode]["final_loss"] and ckpt["epochs"] == TOY["epochs"]
        assert set(ckpt["model"]) == set(GPT(ModelConfig(vocab_size=9, block_size=16, n_layer=1, n_head=2,
                                                         n_embd=32)).state_dict())
    speedup = 1 - opt["total_time"] / base["total_time"]
    gain = opt["throughput"] / base["throughput"] - 1
    difference = abs(opt["final_loss"] - base["final_loss"])
    assert verdict["speedup_percent"] == pytest.approx(100 * speedup)
    assert verdict["all_criteria_met"] == (speedup >= 0.25 and difference < 0.1 and gain >= 0.20)
    assert final["speedup"] == pytest.approx(speedup) and final["all_criteria_met"] in (0.0, 1.0)
    assert final["baseline_final_loss"] == base["final_loss"]
    assert len(records) == 1 and records[0]["speedup"] == pytest.approx(speedup)  # only the finals


def test_comparison_fails_the_criteria_when_the_optimized_run_is_slower():
    def result(total_time: float, loss: float) -> tuple[dict, list[float]]:
        final = {"total_time": total_time, "avg_epoch_time": total_time, "final_loss": loss,
                 "throughput": 1000 / total_time, "params": 10}
        return final, [loss]

    fast = trainer.comparison({"baseline": result(10.0, 1.0), "optimized": result(7.0, 1.05)})["comparison"]
    assert fast["all_criteria_met"] and fast["loss_convergence_match"]
    slow = trainer.comparison({"baseline": result(10.0, 1.0), "optimized": result(9.0, 1.0)})["comparison"]
    assert not slow["all_criteria_met"]  # 10% faster only
    diverged = trainer.comparison({"baseline": result(10.0, 1.0), "optimized": result(5.0, 1.2)})["comparison"]
    assert not diverged["all_criteria_met"] and not diverged["loss_convergence_match"]


@pytest.mark.parametrize("bad", [{"kernel_level": 4}, {"mode": "optimized", "compression_ratio": 0}])
def test_bad_kernel_level_or_compression_ratio_is_rejected(run_main, bad):
    with pytest.raises(SystemExit):
        run_main("bad", **bad)
