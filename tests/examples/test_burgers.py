"""Toy-size tests of the Burgers example: solver physics, model shapes, the trainer.

This directory deliberately has no __init__.py: with pytest's default import mode and no
tests/__init__.py, a tests/examples package would be imported as ``examples`` and shadow
the top-level ``examples`` package under test.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # `examples` is not an installed package
    sys.path.insert(0, str(ROOT))

torch = pytest.importorskip("torch")

from examples.burgers import model as model_mod  # noqa: E402
from examples.burgers import evaluate, solver, train  # noqa: E402

FINAL_METRICS = {
    "operator_final_loss",
    "nrmse",
    "rollout_nrmse",
    "conservation_gap",
    "bc_violation",
    "ece",
    "rollout_horizon",
    "train_time",
    "params",
}

TINY = {
    "tokens": 8,
    "hidden": 16,
    "depth": 2,
    "heads": 2,
    "epochs": 2,
    "batch_size": 16,
    "n_train": 8,
    "n_test": 4,
    "n_x": 32,
    "n_t": 6,
    "rollout_steps": 5,
}


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    torch.set_num_threads(1)
    monkeypatch.setenv("STUDYC_CACHE", str(tmp_path / "cache"))
    for name in ("STUDYC_CONFIG", "STUDYC_RUN_DIR", "STUDYC_SEED", "STUDYC_CPUS", "STUDYC_SOURCE_RUN_DIR"):
        monkeypatch.delenv(name, raising=False)
    yield


def run_train(monkeypatch, run_dir: Path, config: dict, argv=None):
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "config.json"
    path.write_text(json.dumps(config))
    monkeypatch.setenv("STUDYC_CONFIG", str(path))
    monkeypatch.setenv("STUDYC_RUN_DIR", str(run_dir))
    return train.main(argv or [])


def read_metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


# ----------------------------------------------------------------------------- solver


def test_solver_matches_cole_hopf_exact_solution():
    # phi = a + b exp(-nu t) cos x solves the heat equation, so u = -2 nu phi_x / phi
    # solves viscous Burgers exactly (Cole-Hopf) on the periodic domain [0, 2 pi).
    a, b, nu, dt, n_t, n = 1.0, 0.8, 0.1, 0.25, 9, 128
    x = np.arange(n) * (2 * np.pi / n)

    def exact(t):
        e = b * np.exp(-nu * t)
        return 2 * nu * e * np.sin(x) / (a + e * np.cos(x))

    u = solver.solve(exact(0.0)[None], n_t, dt, nu)[0]
    ref = np.stack([exact(i * dt) for i in range(n_t)])
    assert np.abs(u - ref).max() < 1e-6 * np.abs(ref).max() + 1e-8


def test_solver_conserves_mean_and_dissipates_energy():
    u = solver.generate(6, n_x=32, n_t=11, dt=0.2, nu=0.02, seed=3).astype(np.float64)
    assert u.shape == (6, 11, 32)
    assert np.isfinite(u).all()
    mean = u.mean(-1)
    assert np.abs(mean - mean[:, :1]).max() < 1e-5
    energy = (u**2).mean(-1)
    assert (np.diff(energy, axis=1) <= 1e-6).all()  # never grows ...
    assert (energy[:, -1] < 0.95 * energy[:, 0]).all()  # ... and decays for nu > 0
    assert np.abs(u.std(-1)).min() > 0.01  # not trivially flat


def test_solver_deterministic_and_cached(tmp_path, monkeypatch):
    args = dict(n_x=32, n_t=5, dt=0.2, nu=0.02)
    first = solver.generate(4, seed=1, **args)
    files = list((tmp_path / "cache" / "burgers").glob("*.npz"))
    assert len(files) == 1
    # the second call must come from the cache: make solving impossible
    monkeypatch.setattr(solver, "solve", lambda *a, **k: pytest.fail("not cached"))
    again = solver.generate(4, seed=1, **args)
    np.testing.assert_array_equal(first, again)
    monkeypatch.undo()
    monkeypatch.setenv("STUDYC_CACHE", str(tmp_path / "other"))
    fresh = solver.generate(4, seed=1, **args)  # recomputed from scratch
    np.testing.assert_array_equal(first, fresh)
    assert not np.allclose(first, solver.generate(4, seed=2, **args))
    # trajectory i depends on (seed, i) only
    np.testing.assert_array_equal(solver.generate(2, seed=1, **args), first[:2])
    assert not [p for p in (tmp_path / "other" / "burgers").iterdir() if p.name.startswith(".tmp")]


# ----------------------------------------------------------------------------- model


@pytest.mark.parametrize("architecture", ["pure", "u_shaped"])
@pytest.mark.parametrize("attention", ["standard", "channel_separated"])
@pytest.mark.parametrize("head", ["deterministic", "gaussian"])
def test_model_variants_map_field_to_field(architecture, attention, head):
    torch.manual_seed(0)
    net = model_mod.LatentOperator(
        architecture=architecture, tokens=8, attention=attention, hidden=16, depth=3, heads=4,
        head=head,
    )
    u = torch.randn(3, 32)
    out = net(u)
    assert out.shape == (3, 32)
    assert torch.allclose(out, u)  # zero-initialised readout: starts as the identity
    with torch.no_grad():
        net.readout.fc2.weight.normal_()
    mean, logvar = net.forward_dist(u)
    assert mean.shape == (3, 32) and torch.isfinite(mean).all()
    assert not torch.allclose(mean, u)
    if head == "gaussian":
        assert logvar.shape == (3, 32) and torch.isfinite(logvar).all()
    else:
        assert logvar is None
    mean.sum().backward()
    assert all(p.grad is not None for p in net.parameters() if p.requires_grad)
    # the decoder answers at arbitrary query points
    assert net.increment(u, torch.tensor([0.0, 0.33, 1.0])).shape == (3, 3)


def test_model_token_counts_and_attention_params():
    u = torch.randn(2, 16)
    for tokens in (6, 64):  # odd halving, and more tokens than grid points
        net = model_mod.LatentOperator(architecture="u_shaped", tokens=tokens, hidden=16, heads=2)
        assert net(u).shape == (2, 16)
    std = model_mod.LatentOperator(attention="standard", hidden=32, heads=4)
    sep = model_mod.LatentOperator(attention="channel_separated", hidden=32, heads=4)
    assert model_mod.count_params(sep) < model_mod.count_params(std)


def test_u_shaped_levels():
    assert model_mod.UShapedApproximator(16, 4, 2, "standard", tokens=16).levels == 2
    assert model_mod.UShapedApproximator(16, 5, 2, "standard", tokens=16).levels == 2
    assert model_mod.UShapedApproximator(16, 4, 2, "standard", tokens=6).levels == 1


# ----------------------------------------------------------------------------- trainer


def test_parse_overrides():
    argv = ["--set", "tokens=8", "--set=architecture=pure", "--set", "betas=[0.9, 0.95]"]
    got = train.parse_overrides(argv)
    assert got == {"tokens": 8, "architecture": "pure", "betas": [0.9, 0.95]}
    with pytest.raises(SystemExit):
        train.parse_overrides(["tokens=8"])


def test_train_writes_all_final_metrics(tmp_path, monkeypatch):
    cfg = dict(TINY, head="gaussian", ema=0.9, accum_steps=2)
    results = run_train(monkeypatch, tmp_path / "run", cfg)
    records = read_metrics(tmp_path / "run")
    epochs = [r for r in records if "loss" in r]
    assert [r["step"] for r in epochs] == [1, 2]
    assert all(math.isfinite(r["loss"]) and math.isfinite(r["nrmse"]) for r in epochs)
    final = records[-1]
    assert FINAL_METRICS <= set(final)
    assert all(math.isfinite(final[name]) for name in FINAL_METRICS)
    assert 0 < final["nrmse"] < 1
    assert 0 <= final["ece"] <= 1
    assert 0 <= final["rollout_horizon"] <= TINY["rollout_steps"]
    assert final["params"] == model_mod.count_params(
        model_mod.LatentOperator(tokens=8, hidden=16, depth=2, heads=2, head="gaussian")
    )
    assert results["nrmse"] == final["nrmse"]
    # a deterministic head has no ece
    results = run_train(monkeypatch, tmp_path / "det", TINY)
    assert "ece" not in read_metrics(tmp_path / "det")[-1]
    assert FINAL_METRICS - {"ece"} <= set(results)


def test_seed_controls_the_run(tmp_path, monkeypatch):
    a = run_train(monkeypatch, tmp_path / "a", dict(TINY, seed=0))
    b = run_train(monkeypatch, tmp_path / "b", dict(TINY, seed=1))
    again = run_train(monkeypatch, tmp_path / "c", dict(TINY, seed=0))
    assert a["nrmse"] != b["nrmse"]
    assert a["nrmse"] == again["nrmse"]
    monkeypatch.setenv("STUDYC_SEED", "1")  # studyc's seed, when the config has none
    env = run_train(monkeypatch, tmp_path / "d", TINY)
    assert env["nrmse"] == b["nrmse"]


def test_loss_decreases(tmp_path, monkeypatch):
    cfg = dict(TINY, epochs=8, n_train=16, hidden=32, batch_size=8, lr=3e-3)
    run_train(monkeypatch, tmp_path / "run", cfg)
    losses = [r["loss"] for r in read_metrics(tmp_path / "run") if "loss" in r]
    assert len(losses) == 8
    assert losses[-1] < 0.85 * losses[0]
    assert all(later < 1.02 * earlier for earlier, later in zip(losses, losses[1:]))


def test_resume_continues_from_next_epoch(tmp_path, monkeypatch, capsys):
    cfg = dict(TINY, epochs=4, ema=0.9)
    reference = run_train(monkeypatch, tmp_path / "ref", cfg)

    # preempt the run right after the checkpoint of epoch 2 is written
    real_save = train.save_atomic

    def save_then_die(obj, path):
        real_save(obj, path)
        if obj["epoch"] == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(train, "save_atomic", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        run_train(monkeypatch, tmp_path / "run", cfg)
    monkeypatch.setattr(train, "save_atomic", real_save)
    assert (tmp_path / "run" / "checkpoints" / "last.pt").exists()
    capsys.readouterr()

    resumed = run_train(monkeypatch, tmp_path / "run", cfg)
    assert "resumed" in capsys.readouterr().out
    steps = [r["step"] for r in read_metrics(tmp_path / "run") if "loss" in r]
    assert steps == [1, 2, 3, 4]  # epochs 1-2 from the first attempt, 3-4 after resuming
    for name in ("operator_final_loss", "nrmse", "rollout_nrmse", "bc_violation", "params"):
        assert resumed[name] == pytest.approx(reference[name], rel=1e-5)


def test_operator_final_loss_is_the_last_epochs_one_step_mse_over_the_field_variance(tmp_path, monkeypatch):
    # deterministic head: the objective is the same squared error over the increment's
    # variance, so operator_loss / loss is one constant, (delta_scale / u_scale) ** 2
    results = run_train(monkeypatch, tmp_path / "det", dict(TINY, epochs=3))
    epochs = [r for r in read_metrics(tmp_path / "det") if "operator_loss" in r]
    ratios = [r["operator_loss"] / r["loss"] for r in epochs]
    assert len(ratios) == 3 and 0 < ratios[0] < 1  # the increment varies less than the field
    assert ratios == pytest.approx([ratios[0]] * 3, rel=1e-4)
    assert results["operator_final_loss"] == epochs[-1]["operator_loss"]
    # gaussian head: the objective is an NLL (may go negative); operator_loss stays an MSE
    gauss = run_train(monkeypatch, tmp_path / "gauss", dict(TINY, head="gaussian"))
    assert 0 < gauss["operator_final_loss"] < 1


def test_nan_loss_stops_with_nonzero_status(tmp_path, monkeypatch, capsys):
    with pytest.raises(SystemExit) as exc:
        run_train(monkeypatch, tmp_path / "run", dict(TINY, lr=1e30, grad_clip=0, warmup=0))
    assert exc.value.code not in (0, None)
    assert "loss became" in capsys.readouterr().err
    last = read_metrics(tmp_path / "run")[-1]
    assert math.isnan(last["loss"])


def run_evaluate(monkeypatch, run_dir: Path, source: Path, config: dict) -> dict:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps(config))
    monkeypatch.setenv("STUDYC_CONFIG", str(run_dir / "config.json"))
    monkeypatch.setenv("STUDYC_RUN_DIR", str(run_dir))
    monkeypatch.setenv("STUDYC_SOURCE_RUN_DIR", str(source))
    return evaluate.main([])


def test_evaluate_scores_the_trained_checkpoint_without_training(tmp_path, monkeypatch):
    cfg = dict(TINY, head="gaussian", ema=0.9)
    trained = run_train(monkeypatch, tmp_path / "train", cfg)
    # the same held-out set: exactly the trainer's final metrics, from the checkpoint alone
    same = run_evaluate(monkeypatch, tmp_path / "same", tmp_path / "train", {"n_test": TINY["n_test"]})
    assert same == pytest.approx(trained, rel=1e-6)
    assert read_metrics(tmp_path / "same")[-1]["step"] == TINY["epochs"]
    # full-eval: more trajectories, the model's own settings (an evaluation config cannot change them)
    full = run_evaluate(monkeypatch, tmp_path / "full", tmp_path / "train", {"n_test": 12, "tokens": 99})
    assert full["params"] == trained["params"] and full["train_time"] == trained["train_time"]
    assert full["nrmse"] != trained["nrmse"] and all(math.isfinite(v) for v in full.values())


def test_evaluate_without_a_checkpoint_says_what_is_missing(tmp_path, monkeypatch, capsys):
    with pytest.raises(SystemExit, match="no run to evaluate"):
        evaluate.main([])
    with pytest.raises(SystemExit, match="saved no checkpoint"):
        run_evaluate(monkeypatch, tmp_path / "eval", tmp_path / "missing", {})
