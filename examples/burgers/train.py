"""Train a latent-token neural operator to step viscous 1D Burgers forward in time.

Run from the repository root:

    python -m examples.burgers.train                          # defaults
    python -m examples.burgers.train --set tokens=16 --set architecture='"pure"'
    STUDYC_CONFIG=cfg.json python -m examples.burgers.train   # how studyc runs it

Settings: DEFAULTS below, then the JSON file named by $STUDYC_CONFIG (studyc.config),
then ``--set key=value`` (value parsed as JSON when it parses, else taken as a string).

The model learns u(t + dt) from u(t) on trajectories from ``solver.generate``; the data
set is fixed by ``data_seed`` (every arm sees the same data), the model init and the
shuffling by ``seed`` (or $STUDYC_SEED when the config has no seed).

Logged per epoch (step = epoch, 1-based): loss (the training objective), operator_loss
(the epoch's mean squared one-step error on the training pairs, in units of the field's
variance: the objective of the deterministic head, rescaled), nrmse. Logged once at the
end (step = last epoch), operator_final_loss (the last epoch's operator_loss: the
seed's "verify operator final loss < 0.001"), then, on the held-out trajectories with
the EMA weights when ema > 0:
  nrmse             one-step ||pred - true||_2 / ||true||_2, averaged over samples
  rollout_nrmse     the same along an autoregressive rollout from t = 0, averaged over
                    rollout steps and trajectories
  conservation_gap  |mean_x(pred at last rollout step) - mean_x(u0)| / rms(u0), averaged
                    over trajectories (the spatial mean is conserved by periodic Burgers)
  bc_violation      periodicity violation of the predicted field at the wrap-around:
                    the decoder is queried off-grid at x = 0 and x = 1 (the same point on
                    the periodic domain) and
                    0.5 * (|f(1) - f(0)| / rms(f) + |f'(1) - f'(0)| / rms(f')),
                    with f' by central differences; averaged over one-step predictions
  ece               (head = gaussian only) expected calibration error of central
                    prediction intervals at levels 0.05, 0.15, ..., 0.95:
                    mean |empirical coverage - level|
  rollout_horizon   rollout steps while the trajectory-averaged Pearson correlation
                    between prediction and truth stays >= 0.8
  train_time        wall-clock seconds of the training epochs (summed over resumes)
  params            number of model parameters

Checkpoints (when studyc gives a checkpoint dir): model + optimizer + EMA + epoch after
every epoch, written atomically; a restarted run resumes after the last saved epoch.
A NaN/inf loss is logged and ends the run with exit status 3. CUDA out-of-memory errors
are not caught (studyc classifies them).
"""

from __future__ import annotations

import copy
import json
import math
import os
import sys
import time

import numpy as np
import torch

import studyc
from examples.burgers.model import LatentOperator, count_params
from examples.burgers.solver import generate

DEFAULTS = {
    # model
    "architecture": "u_shaped",  # u_shaped | pure
    "tokens": 32,  # latent tokens
    "attention": "standard",  # standard | channel_separated
    "hidden": 64,
    "depth": 4,
    "heads": 4,
    "head": "deterministic",  # deterministic | gaussian (mean + log-variance, NLL loss)
    "residual": True,  # predict the increment u(t+dt) - u(t)
    # optimisation
    "lr": 1e-3,
    "betas": [0.9, 0.99],
    "weight_decay": 0.01,
    "warmup": 0.1,  # fraction of optimizer steps with linear warmup, then cosine decay
    "min_lr_ratio": 0.1,  # the cosine ends at lr * min_lr_ratio
    "ema": 0.0,  # EMA decay of the weights (0 = off); evaluation uses the EMA weights
    "epochs": 10,
    "batch_size": 32,
    "accum_steps": 1,  # micro-batches per optimizer step
    "grad_clip": 1.0,  # 0 = off
    # data
    "n_train": 128,  # trajectories
    "n_test": 32,
    "n_x": 64,
    "n_t": 21,
    "dt": 0.2,
    "nu": 0.02,
    "data_seed": 0,
    # evaluation
    "rollout_steps": 20,  # capped at n_t - 1
    "eval_batch_size": 256,
    # run
    "seed": 0,
    "device": "auto",  # auto | cpu | cuda | cuda:N
}

NAN_EXIT = 3


def parse_overrides(argv: list[str]) -> dict:
    """``--set key=value`` pairs; values are JSON when they parse, else strings."""
    out: dict = {}
    it = iter(argv)
    for arg in it:
        if arg == "--set":
            arg = next(it, None)
            if arg is None:
                raise SystemExit("--set needs key=value")
        elif arg.startswith("--set="):
            arg = arg[len("--set=") :]
        elif arg in ("-h", "--help"):
            print(__doc__)
            print("keys and defaults:", json.dumps(DEFAULTS, indent=1))
            raise SystemExit(0)
        else:
            raise SystemExit(f"unknown argument {arg!r} (use --set key=value)")
        key, sep, value = arg.partition("=")
        if not sep:
            raise SystemExit(f"--set {arg!r}: expected key=value")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def lr_at(step: int, total: int, cfg: dict) -> float:
    """Linear warmup over the first warmup * total steps, then cosine to min_lr."""
    warm = int(round(cfg["warmup"] * total))
    if step < warm:
        return cfg["lr"] * (step + 1) / warm
    progress = (step - warm) / max(1, total - warm)
    min_lr = cfg["lr"] * cfg["min_lr_ratio"]
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress))) * (cfg["lr"] - min_lr)


def save_atomic(obj: dict, path) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


@torch.no_grad()
def predict(model, u: torch.Tensor, cfg: dict, autocast) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Batched (mean, logvar) for inputs u[N, n_x]."""
    means, logvars = [], []
    for chunk in u.split(cfg["eval_batch_size"]):
        with autocast():
            mean, logvar = model.forward_dist(chunk)
        means.append(mean.float())
        if logvar is not None:
            logvars.append(logvar.float())
    return torch.cat(means), (torch.cat(logvars) if logvars else None)


def nrmse(pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """Per-sample ||pred - true|| / ||true|| over the last axis."""
    return (pred - true).norm(dim=-1) / true.norm(dim=-1).clamp_min(1e-12)


@torch.no_grad()
def bc_violation(model, u: torch.Tensor, pred: torch.Tensor, cfg: dict, autocast) -> float:
    """Mismatch of value and slope of the predicted field between x = 0 and x = 1."""
    n = u.shape[1]
    h = 0.25 / n
    xq = torch.tensor([-h, 0.0, h, 1.0 - h, 1.0, 1.0 + h], device=u.device)
    vals = []
    for chunk in u.split(cfg["eval_batch_size"]):
        with autocast():  # residual: only the increment (u itself is periodic exactly)
            vals.append(model.increment(chunk, xq).float())
    f = torch.cat(vals)  # [N, 6]
    value_gap = (f[:, 4] - f[:, 1]).abs()
    slope_gap = ((f[:, 5] - f[:, 3]) - (f[:, 2] - f[:, 0])).abs() / (2 * h)
    rms = pred.pow(2).mean(-1).sqrt().clamp_min(1e-12)
    slope = (torch.roll(pred, -1, -1) - torch.roll(pred, 1, -1)) * (n / 2.0)  # d/dx, x in [0, 1)
    rms_slope = slope.pow(2).mean(-1).sqrt().clamp_min(1e-12)
    return float((0.5 * (value_gap / rms + slope_gap / rms_slope)).mean())


def ece(mean: torch.Tensor, logvar: torch.Tensor, true: torch.Tensor, delta_scale) -> float:
    """Expected calibration error of central Gaussian intervals (10 levels)."""
    z = ((true - mean) / delta_scale).abs() * torch.exp(-0.5 * logvar)
    levels = torch.arange(0.05, 1.0, 0.1, dtype=torch.float64)
    half_width = torch.special.ndtri(0.5 + levels / 2).to(z.device)
    coverage = (z.double().flatten()[:, None] <= half_width[None, :]).double().mean(0)
    return float((coverage.cpu() - levels).abs().mean())


def pearson(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a = a - a.mean(-1, keepdim=True)
    b = b - b.mean(-1, keepdim=True)
    return (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1)).clamp_min(1e-12)


def build_model(cfg: dict) -> LatentOperator:
    return LatentOperator(
        architecture=cfg["architecture"],
        tokens=cfg["tokens"],
        attention=cfg["attention"],
        hidden=cfg["hidden"],
        depth=cfg["depth"],
        heads=cfg["heads"],
        head=cfg["head"],
        residual=cfg["residual"],
    )


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    # -------------------------------------------------------------------- config
    defaults = dict(DEFAULTS)
    if os.environ.get("STUDYC_SEED"):
        defaults["seed"] = int(os.environ["STUDYC_SEED"])
    cfg = studyc.config(defaults)
    cfg.update(parse_overrides(argv))
    unknown = sorted(set(cfg) - set(DEFAULTS))
    if unknown:
        print(f"warning: unknown config keys ignored: {unknown}", file=sys.stderr)
    if os.environ.get("STUDYC_CPUS"):
        torch.set_num_threads(max(1, int(os.environ["STUDYC_CPUS"])))
    if cfg["device"] == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(cfg["device"])
    use_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()

    def autocast():
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_bf16)

    torch.manual_seed(cfg["seed"])
    np.random.seed(cfg["seed"] % 2**32)

    # -------------------------------------------------------------------- data
    data_args = (cfg["n_x"], cfg["n_t"], cfg["dt"], cfg["nu"])
    u_train = torch.from_numpy(generate(cfg["n_train"], *data_args, seed=cfg["data_seed"]))
    u_test = torch.from_numpy(generate(cfg["n_test"], *data_args, seed=cfg["data_seed"] + 1))
    x_train = u_train[:, :-1].reshape(-1, cfg["n_x"]).to(device)  # one-step pairs
    y_train = u_train[:, 1:].reshape(-1, cfg["n_x"]).to(device)
    x_test = u_test[:, :-1].reshape(-1, cfg["n_x"]).to(device)
    y_test = u_test[:, 1:].reshape(-1, cfg["n_x"]).to(device)
    u_test = u_test.to(device)
    n_pairs = x_train.shape[0]

    # -------------------------------------------------------------------- model
    model = build_model(cfg).to(device)
    model.u_shift.fill_(float(u_train.mean()))
    model.u_scale.fill_(float(u_train.std()))
    target_train = y_train - x_train if cfg["residual"] else y_train
    model.delta_scale.fill_(float(target_train.std()))
    n_params = count_params(model)
    ema_model = None
    if cfg["ema"] > 0:
        ema_model = copy.deepcopy(model).requires_grad_(False)

    decay, no_decay = [], []
    for name, p in model.named_parameters():
        matrix = p.dim() >= 2 and not name.endswith("bias") and name != "queries"
        (decay if matrix else no_decay).append(p)  # no decay on biases, norms, queries
    optimizer = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": cfg["weight_decay"]},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=cfg["lr"],
        betas=tuple(cfg["betas"]),
    )
    micro_per_epoch = math.ceil(n_pairs / cfg["batch_size"])
    steps_per_epoch = math.ceil(micro_per_epoch / cfg["accum_steps"])
    total_steps = cfg["epochs"] * steps_per_epoch

    # -------------------------------------------------------------------- resume
    start_epoch, step, train_time = 1, 0, 0.0
    operator_loss = math.nan  # the last epoch's, kept in the checkpoint for a finished run resumed
    ckpt_dir = studyc.checkpoint_dir()
    ckpt_path = ckpt_dir / "last.pt" if ckpt_dir is not None else None
    if ckpt_path is not None and ckpt_path.exists():
        ckpt = torch.load(ckpt_path, map_location=device, weights_only=True)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        if ema_model is not None and ckpt.get("ema") is not None:
            ema_model.load_state_dict(ckpt["ema"])
        start_epoch, step, train_time = ckpt["epoch"] + 1, ckpt["step"], ckpt["train_time"]
        operator_loss = ckpt.get("operator_loss", math.nan)
        print(f"resumed from {ckpt_path} after epoch {ckpt['epoch']}")

    print(
        f"burgers: {cfg['architecture']}/{cfg['attention']} tokens={cfg['tokens']} "
        f"hidden={cfg['hidden']} depth={cfg['depth']} head={cfg['head']} params={n_params} "
        f"pairs={n_pairs} steps={total_steps} device={device}{' bf16' if use_bf16 else ''}"
    )
    identity = float(nrmse(x_test, y_test).mean())
    print(f"held-out one-step nrmse of the identity map (u(t+dt) = u(t)): {identity:.4f}")

    # -------------------------------------------------------------------- train
    def loss_fn(xb: torch.Tensor, yb: torch.Tensor) -> tuple[torch.Tensor, float]:
        """(training objective, mean squared one-step error in units of the field's variance)."""
        with autocast():
            mean, logvar = model.forward_dist(xb)
        err = (yb - mean) / model.delta_scale
        mse = float((yb - mean.detach().float()).pow(2).mean() / model.u_scale.pow(2))
        if logvar is None:
            return err.pow(2).mean(), mse
        return 0.5 * (logvar + err.pow(2) * torch.exp(-logvar)).mean(), mse

    def eval_model():
        return ema_model if ema_model is not None else model

    for epoch in range(start_epoch, cfg["epochs"] + 1):
        t0 = time.perf_counter()
        model.train()
        shuffle = torch.Generator().manual_seed(cfg["seed"] * 100_003 + epoch)
        perm = torch.randperm(n_pairs, generator=shuffle).to(device)
        batches = perm.split(cfg["batch_size"])
        loss_sum, mse_sum, loss_count = 0.0, 0.0, 0
        for first in range(0, len(batches), cfg["accum_steps"]):
            group = batches[first : first + cfg["accum_steps"]]
            lr = lr_at(step, total_steps, cfg)
            for g in optimizer.param_groups:
                g["lr"] = lr
            for idx in group:
                loss, mse = loss_fn(x_train[idx], y_train[idx])
                if not torch.isfinite(loss):
                    studyc.log(step=epoch, loss=float("nan"))
                    print(
                        f"error: loss became {loss.item()} at epoch {epoch}, optimizer step {step} "
                        f"(lr {lr:.3g}); stopping",
                        file=sys.stderr,
                    )
                    sys.exit(NAN_EXIT)
                (loss / len(group)).backward()
                loss_sum += loss.item() * len(idx)
                mse_sum += mse * len(idx)
                loss_count += len(idx)
            if cfg["grad_clip"] > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg["grad_clip"])
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            if ema_model is not None:
                d = min(cfg["ema"], (1 + step) / (10 + step))  # warm-started EMA
                with torch.no_grad():
                    for pe, p in zip(ema_model.parameters(), model.parameters()):
                        pe.lerp_(p, 1.0 - d)
        model.eval()
        pred, _ = predict(eval_model(), x_test, cfg, autocast)
        epoch_nrmse = float(nrmse(pred, y_test).mean())
        if device.type == "cuda":
            torch.cuda.synchronize()
        train_time += time.perf_counter() - t0
        epoch_loss = loss_sum / max(1, loss_count)
        operator_loss = mse_sum / max(1, loss_count)
        studyc.log(step=epoch, loss=epoch_loss, operator_loss=operator_loss, nrmse=epoch_nrmse)
        print(
            f"epoch {epoch:3d}/{cfg['epochs']} loss {epoch_loss:.4f} nrmse {epoch_nrmse:.4f} "
            f"lr {lr:.2e} time {train_time:.1f}s",
            flush=True,
        )
        if ckpt_path is not None:
            save_atomic(
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "ema": ema_model.state_dict() if ema_model is not None else None,
                    "epoch": epoch,
                    "step": step,
                    "train_time": train_time,
                    "operator_loss": operator_loss,
                    "config": cfg,
                },
                ckpt_path,
            )

    # -------------------------------------------------------------------- evaluate
    net = eval_model()
    results = {"operator_final_loss": operator_loss, **held_out_metrics(net, u_test, cfg, autocast)}
    results["train_time"] = train_time
    results["params"] = n_params
    studyc.log(step=cfg["epochs"], **results)
    print("final: " + " ".join(f"{k}={v:.4g}" for k, v in results.items()), flush=True)
    return results


@torch.no_grad()
def held_out_metrics(net, u_test: torch.Tensor, cfg: dict, autocast) -> dict:
    """The final metrics of ``net`` on held-out trajectories u_test[N, n_t, n_x] (one-step,
    rollout, physics, calibration), as the module docstring defines them."""
    net.eval()
    x_test = u_test[:, :-1].reshape(-1, u_test.shape[-1])
    y_test = u_test[:, 1:].reshape(-1, u_test.shape[-1])
    mean, logvar = predict(net, x_test, cfg, autocast)
    results = {"nrmse": float(nrmse(mean, y_test).mean())}

    steps = max(1, min(cfg["rollout_steps"], u_test.shape[1] - 1))
    state, traj = u_test[:, 0], []
    for _ in range(steps):
        state, _ = predict(net, state, cfg, autocast)
        traj.append(state)
    traj = torch.stack(traj, 1)  # [n_test, steps, n_x]
    truth = u_test[:, 1 : steps + 1]
    results["rollout_nrmse"] = float(nrmse(traj, truth).mean())
    u0 = u_test[:, 0]
    drift = (traj[:, -1].mean(-1) - u0.mean(-1)).abs()
    results["conservation_gap"] = float((drift / u0.pow(2).mean(-1).sqrt()).mean())
    results["bc_violation"] = bc_violation(net, x_test, mean, cfg, autocast)
    if logvar is not None:
        results["ece"] = ece(mean, logvar, y_test, net.delta_scale)
    corr = pearson(traj, truth).mean(0)  # [steps]
    below = (corr < 0.8).nonzero()
    results["rollout_horizon"] = int(below[0, 0]) if len(below) else steps
    return results


if __name__ == "__main__":
    main()
