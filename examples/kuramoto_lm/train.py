"""PhaseGPT: a character-level transformer LM with one Kuramoto phase-coupled attention layer.

Run by studyc as ``python -m examples.kuramoto_lm.train`` (config from STUDYC_CONFIG), or
by hand: ``python -m examples.kuramoto_lm.train --set phase_layer=1 --set coupling=2.0``.

Data: a fixed list of Python stdlib sources (offline, deterministic per Python version),
each file split 90/10 into train/validation. ``phase_layer`` picks the block whose
attention is replaced by Kuramoto phase-coupled attention (-1 or null: plain baseline).

Logs per eval: loss (train, mean since the last eval), val_loss, val_ppl, order_r (only
when a phase layer exists). With a phase layer, order_r_init (step 0): R of the untrained
model on the same validation windows - the synchronisation that K and the oscillator
count give before anything is learned (seed 004's "expected from parameters alone").
Final: val_ppl, val_loss, order_r, order_r_init, train_time, params.
"""

from __future__ import annotations

import math
import time

import torch

import studyc
from examples._common import check_finite, count_params, load_config, seed_everything, setup_device
from examples.kuramoto_lm.data import VOCAB_SIZE, get_batch, load_corpus
from examples.kuramoto_lm.model import GPT, GPTConfig

DEFAULTS = {
    # model
    "n_layer": 4,
    "n_head": 4,
    "n_embd": 128,
    "block_size": 128,
    "dropout": 0.0,
    # Kuramoto phase-coupled attention
    "phase_layer": 1,  # block index; -1 or null = plain transformer baseline
    "oscillators": 8,  # phase oscillators per token and head
    "coupling": 1.0,  # K
    "kuramoto_steps": 4,  # Euler steps of the phase dynamics
    "dt": 0.25,  # Euler step size
    # optimisation
    "batch_size": 32,
    "lr": 3e-3,
    "min_lr": 3e-4,
    "warmup": 50,
    "weight_decay": 0.1,
    "grad_clip": 1.0,
    "steps": 2000,
    # evaluation and data
    "eval_interval": 200,
    "eval_batches": 20,
    "max_chars": None,  # cap on corpus size (null: all ~650k characters)
    "seed": 0,
    "device": "auto",
}


def lr_at(step: int, cfg: dict) -> float:
    """Linear warmup, then cosine decay from lr to min_lr over the remaining steps."""
    if step < cfg["warmup"]:
        return cfg["lr"] * (step + 1) / cfg["warmup"]
    progress = (step - cfg["warmup"]) / max(1, cfg["steps"] - cfg["warmup"])
    return cfg["min_lr"] + 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress))) * (cfg["lr"] - cfg["min_lr"])


@torch.no_grad()
def evaluate(model: GPT, val: torch.Tensor, cfg: dict, device: torch.device, autocast) -> tuple[float, float]:
    """Mean validation loss over a fixed set of windows, and the mean order parameter R."""
    model.eval()
    gen = torch.Generator().manual_seed(1234)  # the same windows for every run and eval
    losses, orders = [], []
    phase = model.phase_attention()
    for _ in range(cfg["eval_batches"]):
        x, y = get_batch(val, cfg["block_size"], cfg["batch_size"], gen)
        with autocast():
            _, loss = model(x.to(device), y.to(device))
        losses.append(loss.item())
        if phase is not None:
            orders.append(phase.last_order.item())
    model.train()
    return sum(losses) / len(losses), (sum(orders) / len(orders) if orders else float("nan"))


def main(argv: list[str] | None = None) -> dict:
    cfg = load_config(DEFAULTS, argv)
    phase_layer = cfg["phase_layer"]
    if phase_layer is not None and int(phase_layer) < 0:
        phase_layer = None
    seed_everything(int(cfg["seed"]))
    device, autocast = setup_device(cfg["device"])

    # ---- data -----------------------------------------------------------------------
    train, val = load_corpus(cfg["max_chars"])
    print(f"corpus: {len(train):,} train / {len(val):,} val characters, vocab {VOCAB_SIZE}")

    # ---- model and optimiser ------------------------------------------------------------
    model = GPT(
        GPTConfig(
            vocab_size=VOCAB_SIZE,
            block_size=cfg["block_size"],
            n_layer=cfg["n_layer"],
            n_head=cfg["n_head"],
            n_embd=cfg["n_embd"],
            dropout=cfg["dropout"],
            phase_layer=None if phase_layer is None else int(phase_layer),
            oscillators=cfg["oscillators"],
            coupling=float(cfg["coupling"]),
            kuramoto_steps=cfg["kuramoto_steps"],
            dt=float(cfg["dt"]),
        )
    ).to(device)
    params = count_params(model)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg["weight_decay"]}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg["lr"],
        betas=(0.9, 0.99),
    )
    label = "baseline" if phase_layer is None else f"phase layer {phase_layer}, K={cfg['coupling']}"
    print(f"model: {params:,} parameters ({label}) on {device}")

    order_r_init = float("nan")
    if phase_layer is not None:  # R before training: what the coupling alone produces
        _, order_r_init = evaluate(model, val, cfg, device, autocast)
        studyc.log(step=0, order_r_init=order_r_init)
        print(f"untrained: R {order_r_init:.3f}")

    # ---- training loop ------------------------------------------------------------------
    batch_gen = torch.Generator().manual_seed(int(cfg["seed"]))
    t0 = time.perf_counter()
    running, count = 0.0, 0
    val_loss, order_r = float("nan"), float("nan")
    for step in range(cfg["steps"]):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, cfg)
        x, y = get_batch(train, cfg["block_size"], cfg["batch_size"], batch_gen)
        with autocast():
            _, loss = model(x.to(device), y.to(device))
        loss_value = loss.item()
        check_finite(loss_value, step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg["grad_clip"]:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg["grad_clip"])
        optimizer.step()
        running, count = running + loss_value, count + 1

        last = step == cfg["steps"] - 1
        if (step + 1) % cfg["eval_interval"] == 0 or last:
            val_loss, order_r = evaluate(model, val, cfg, device, autocast)
            check_finite(val_loss, step + 1, "val_loss")
            metrics = {"loss": running / count, "val_loss": val_loss, "val_ppl": math.exp(val_loss)}
            if phase_layer is not None:
                metrics["order_r"] = order_r
            studyc.log(step=step + 1, **metrics)
            r_text = f" | R {order_r:.3f}" if phase_layer is not None else ""
            print(
                f"step {step + 1:5d} | loss {running / count:.4f} | val {val_loss:.4f}"
                f" | ppl {math.exp(val_loss):.2f}{r_text} | {time.perf_counter() - t0:.1f}s"
            )
            running, count = 0.0, 0
    train_time = time.perf_counter() - t0

    final = {"val_ppl": math.exp(val_loss), "val_loss": val_loss, "train_time": train_time, "params": params}
    if phase_layer is not None:
        final.update(order_r=order_r, order_r_init=order_r_init)
    studyc.log(step=cfg["steps"], **final)
    print("final: " + ", ".join(f"{k}={v:.4g}" for k, v in final.items()))
    return final


if __name__ == "__main__":
    main()
