"""Speedup example: the two attention paths agree, and baseline/optimized runs are comparable.

"""

from __future__ import annotations

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
