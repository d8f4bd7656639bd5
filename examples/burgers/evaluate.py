"""Evaluate a trained Burgers operator on a fresh held-out set, without training.

Run by studyc as an evaluation stage (``evaluate: python -m examples.burgers.evaluate``,
seed 002's full-eval): the run it evaluates is named by $STUDYC_SOURCE_RUN_DIR (by hand:
``--source RUN_DIR``); its ``checkpoints/last.pt`` holds the trained weights (the EMA
weights when the run kept them), its config, train_time and operator_loss.

What shaped the model and the data (architecture, sizes, n_x, n_t, dt, nu, data_seed)
comes from the checkpoint's config; only the evaluation settings come from this run's
config: n_test (e.g. 256 trajectories instead of small-eval's 32), rollout_steps,
eval_batch_size, device. The held-out trajectories are drawn like the trainer's.

Logs once (step = the trained epochs): the trainer's final metrics on those trajectories
(nrmse, rollout_nrmse, conservation_gap, bc_violation, ece with a gaussian head,
rollout_horizon), plus the training's operator_final_loss, train_time and params, so a
full-eval result stands beside a trained one.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import torch

import studyc
from examples.burgers.model import count_params
from examples.burgers.solver import generate
from examples.burgers.train import build_model, held_out_metrics, parse_overrides

EVAL_KEYS = ("n_test", "rollout_steps", "eval_batch_size", "device")


def source_dir(argv: list[str]) -> tuple[Path, list[str]]:
    """The evaluated run's directory (--source DIR or $STUDYC_SOURCE_RUN_DIR) and the rest of argv."""
    if argv[:1] == ["--source"] and len(argv) >= 2:
        return Path(argv[1]), argv[2:]
    value = os.environ.get("STUDYC_SOURCE_RUN_DIR")
    if not value:
        raise SystemExit("error: no run to evaluate: set STUDYC_SOURCE_RUN_DIR (studyc does, in an evaluation "
                         "stage) or pass --source RUN_DIR")
    return Path(value), argv


def main(argv: list[str] | None = None) -> dict:
    source, argv = source_dir(sys.argv[1:] if argv is None else argv)
    path = source / "checkpoints" / "last.pt"
    if not path.exists():
        raise SystemExit(f"error: {path} does not exist: the evaluated run saved no checkpoint (did it finish?)")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    cfg = dict(ckpt["config"])
    ours = {**studyc.config(), **parse_overrides(argv)}  # the evaluated run's whole config: read, not checked
    cfg.update({k: ours[k] for k in EVAL_KEYS if k in ours})
    if os.environ.get("STUDYC_CPUS"):
        torch.set_num_threads(max(1, int(os.environ["STUDYC_CPUS"])))
    auto = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(auto if cfg["device"] == "auto" else cfg["device"])
    use_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()

    def autocast():
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_bf16)

    net = build_model(cfg)
    net.load_state_dict(ckpt["ema"] if ckpt.get("ema") is not None else ckpt["model"])
    net.to(device)
    data_args = (cfg["n_x"], cfg["n_t"], cfg["dt"], cfg["nu"])
    u_test = torch.from_numpy(generate(cfg["n_test"], *data_args, seed=cfg["data_seed"] + 1)).to(device)
    print(f"evaluating {path} (epoch {ckpt['epoch']}) on {cfg['n_test']} held-out trajectories, device={device}")

    results = {"operator_final_loss": ckpt.get("operator_loss", math.nan),
               **held_out_metrics(net, u_test, cfg, autocast),
               "train_time": ckpt["train_time"], "params": count_params(net)}
    studyc.log(step=ckpt["epoch"], **results)
    print("final: " + " ".join(f"{k}={v:.4g}" for k, v in results.items()), flush=True)
    return results


if __name__ == "__main__":
    main()
