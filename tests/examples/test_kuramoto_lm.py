"""PhaseGPT example: Kuramoto attention pieces and the trainer's run protocol, at toy size.

"""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from studyc.runtime import sdk  # noqa: E402

from examples.kuramoto_lm import train as trainer  # noqa: E402
from examples.kuramoto_lm.data import VOCAB_SIZE, decode, encode, load_corpus  # noqa: E402
from examples.kuramoto_lm.model import GPT, GPTConfig, KuramotoAttention, order_parameter  # noqa: E402

torch.set_num_threads(1)

TOY = {
    "n_layer": 2,
    "n_head": 2,
    "n_embd": 32,
    "block_size": 32,
    "batch_size": 8,
    "steps": 12,
    "warmup": 2,
    "eval_interval": 6,
    "eval_batches": 2,
    "oscillators": 4,
    "phase_layer": 1,
    "max_chars": 40_000,
    "device": "cpu",
}
FINAL = ("val_ppl", "order_r", "order_r_init", "train_time", "params")



def toy_model(**kw) -> GPT:
    cfg = GPTConfig(vocab_size=VOCAB_SIZE, block_size=16, n_layer=2, n_head=2, n_embd=16, oscillators=3)
    for key, value in kw.items():
        setattr(cfg, key, value)
    return GPT(cfg)


def test_order_parameter_is_one_for_identical_phases():
    theta = torch.full((2, 3, 10, 4), 1.234)
    assert order_parameter(theta, dim=-2).item() == pytest.approx(1.0, abs=1e-6)


def test_order_parameter_in_unit_interval_and_small_for_spread_phases():
    torch.manual_seed(0)
    for scale in (0.1, 1.0, 10.0, 100.0):
        r = order_parameter(torch.randn(4, 2, 50, 3) * scale, dim=-2).item()
        assert 0.0 <= r <= 1.0
    evenly = torch.linspace(0, 2 * math.pi, 65)[:-1].view(1, 64, 1)  # perfectly spread
    assert order_parameter(evenly, dim=1).item() == pytest.approx(0.0, abs=1e-5)


def test_model_shapes_and_phase_layer_records_order():
    model = toy_model(phase_layer=1)
    idx = torch.randint(VOCAB_SIZE, (3, 16))
    logits, loss = model(idx, idx)
    assert logits.shape == (3, 16, VOCAB_SIZE)
    assert loss.ndim == 0 and torch.isfinite(loss)
    attn = model.phase_attention()
    assert isinstance(attn, KuramotoAttention)
    assert attn.last_theta.shape == (3, 2, 16, 3)  # (batch, heads, tokens, oscillators)
    assert 0.0 <= attn.last_order.item() <= 1.0
    baseline = toy_model(phase_layer=None)
    assert baseline.phase_attention() is None
    assert sum(p.numel() for p in baseline.parameters()) < sum(p.numel() for p in model.parameters())


def test_phase_layer_must_be_a_block_index():
    with pytest.raises(ValueError, match="phase_layer"):
        toy_model(phase_layer=5)


def test_zero_coupling_is_free_rotation_and_strong_coupling_synchronises():
    attn = toy_model(phase_layer=0).phase_attention()
    torch.manual_seed(0)
    theta = torch.rand(1, 1, 32, 2) * 2 * math.pi
    omega = torch.randn(1, 1, 32, 2)
    a = torch.full((1, 1, 32, 32), 1.0 / 32)  # all-to-all, uniform: the classic model
    attn.coupling, attn.steps, attn.dt = 0.0, 5, 0.1
    assert torch.allclose(attn.evolve(theta, omega, a), theta + 0.5 * omega, atol=1e-5)
    attn.coupling, attn.steps = 4.0, 60
    same = torch.zeros_like(omega)
    before = order_parameter(theta, dim=-2).item()
    after = order_parameter(attn.evolve(theta, same, a), dim=-2).item()
    assert after > 0.99 > before


def test_corpus_is_offline_and_deterministic():
    train_a, val_a = load_corpus(20_000)
    train_b, val_b = load_corpus(20_000)
    assert torch.equal(train_a, train_b) and torch.equal(val_a, val_b)
    assert len(train_a) > 8 * len(val_a) > 0
    assert int(train_a.max()) < VOCAB_SIZE
    assert decode(encode("def f(x):\n    return x")) == "def f(x):\n    return x"


def test_main_logs_final_metrics_and_is_deterministic_per_seed(monkeypatch, tmp_path, run_main):
    final_a, records = run_main("a", seed=0)
    last = records[-1]
    for name in FINAL:
        assert name in last and math.isfinite(last[name]), name
    assert 0.0 <= last["order_r"] <= 1.0
    evals = [r for r in records if "val_loss" in r and "train_time" not in r]
    assert [r["step"] for r in evals] == [6, 12]
    assert all({"val_loss", "val_ppl", "order_r"} <= set(r) for r in evals)
    assert last["val_ppl"] == pytest.approx(math.exp(last["val_loss"]))

    final_b, _ = run_main("b", seed=0)
    final_c, _ = run_main("c", seed=1)
    assert final_b["val_ppl"] == final_a["val_ppl"] and final_b["order_r"] == final_a["order_r"]
    assert final_c["val_ppl"] != final_a["val_ppl"]


def test_order_r_init_is_the_untrained_models_order_on_the_eval_windows(monkeypatch, tmp_path, run_main):
    final, records = run_main("init", steps=6, eval_interval=6)
    assert records[0]["step"] == 0 and records[0]["order_r_init"] == final["order_r_init"]
    assert 0.0 <= final["order_r_init"] <= 1.0
    # training does not move it: the same model before any step, whatever the steps
    longer, _ = run_main("longer", steps=12, eval_interval=6)
    assert longer["order_r_init"] == final["order_r_init"]
    assert longer["order_r"] != final["order_r_init"]


def test_baseline_has_no_order_parameter(monkeypatch, tmp_path, run_main):
    final, records = run_main("base", phase_layer=-1, steps=4, eval_interval=4)
    assert "order_r" not in records[-1] and math.isfinite(records[-1]["val_ppl"])
    assert all("order_r_init" not in r for r in records)
    assert final["params"] < run_main("phase", steps=4, eval_interval=4)[0]["params"]


def test_set_overrides_and_unknown_keys(monkeypatch, tmp_path):
    monkeypatch.setattr(trainer, "load_corpus", lambda max_chars: load_corpus(20_000))
    cfg = trainer.load_config(trainer.DEFAULTS, ["--set", "coupling=2.5", "--set", "phase_layer=null"])
    assert cfg["coupling"] == 2.5 and cfg["phase_layer"] is None
    with pytest.raises(SystemExit):
        trainer.load_config(trainer.DEFAULTS, ["--set", "couplng=2.5"])


def test_nan_loss_exits_nonzero(monkeypatch, tmp_path, capsys, run_main):
    real_forward = GPT.forward

    def poisoned(self, idx, targets=None):
        logits, loss = real_forward(self, idx, targets)
        return logits, (loss * float("nan") if loss is not None and self.training else loss)

    monkeypatch.setattr(GPT, "forward", poisoned)
    with pytest.raises(SystemExit) as exc:
        run_main("nan", steps=3)
    assert exc.value.code not in (0, None)
    assert "nan" in capsys.readouterr().err.lower()
    logged = sdk.read_metrics(tmp_path / "nan" / "metrics.jsonl")
    assert logged and math.isnan(logged[-1]["loss"])
