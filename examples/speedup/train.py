"""Baseline vs optimised training of the same small transformer.

Run by studyc as ``python -m examples.speedup.train`` or by hand:
``python -m examples.speedup.train --set mode=optimized``.

Both modes train the same model (same init, same seed) on the same synthetic copy task,
with the same batches, the same effective batch size and the same number of optimizer
steps, so their final losses are comparable. What differs is only *how* a step runs:

  baseline   explicit softmax(QK^T)V attention; torch.optim.AdamW(foreach=False);
             small micro-batches (``baseline_micro_batch``) with gradient accumulation;
             fp32 everywhere (TF32 matmuls off on CUDA).
  optimized  fused F.scaled_dot_product_attention; AdamW(fused=True) where supported,
             else foreach=True; large micro-batches (``optimized_micro_batch``), less
             accumulation; bf16 autocast on CUDA; torch.compile when ``compile`` is true
             (null = only on CUDA, where it pays; off on CPU by default).

Logs per epoch: loss (mean train loss), epoch_time, throughput (tokens/s). Final:
total_time, avg_epoch_time, final_loss (held-out loss, measured outside the timed
region), train_loss, throughput, samples_per_s, params, peak_mem_mb, cpu_time (process
CPU seconds of the timed epochs: on a shared CPU host it is steadier than wall time).
"""

from __future__ import annotations

import contextlib
import time

import torch

import studyc
from examples._common import check_finite, count_params, load_config, peak_mem_mb, seed_everything, setup_device
from examples.speedup.data import make_copy_data
from examples.speedup.model import GPT, ModelConfig

DEFAULTS = {
    "mode": "baseline",  # "baseline" or "optimized"
    # model
    "n_layer": 4,
    "n_head": 4,
    "n_embd": 128,
    # task: copy n symbols from a vocabulary of `vocab` after a separator
    "seq_half": 32,  # n; sequences are 2n tokens long
    "vocab": 16,
    "num_samples": 8192,  # training sequences per epoch
    "val_samples": 512,
    # optimisation (identical in both modes)
    "epochs": 4,
    "batch_size": 64,  # effective batch: sequences per optimizer step
    "baseline_micro_batch": 8,
    "optimized_micro_batch": 64,
    "lr": 1e-3,
    "weight_decay": 0.0,
    "compile": None,  # null: compile only on CUDA in optimized mode; true/false forces it
    "seed": 0,
    "device": "auto",
}


def build_optimizer(model: torch.nn.Module, cfg: dict, optimized: bool) -> torch.optim.Optimizer:
    kwargs = {"lr": cfg["lr"], "weight_decay": cfg["weight_decay"]}
    if not optimized:
        return torch.optim.AdamW(model.parameters(), foreach=False, **kwargs)
    try:
        return torch.optim.AdamW(model.parameters(), fused=True, **kwargs)
    except (RuntimeError, TypeError, ValueError):  # fused not supported for this device/dtype
        return torch.optim.AdamW(model.parameters(), foreach=True, **kwargs)


@torch.no_grad()
def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device) -> float:
    """Held-out loss in fp32 (outside the timed region, same for both modes)."""
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(x), 256):
        _, loss = model(x[i : i + 256].to(device), y[i : i + 256].to(device))
        n = int((y[i : i + 256] != -100).sum())
        total, count = total + loss.item() * n, count + n
    model.train()
    return total / count


def main(argv: list[str] | None = None) -> dict:
    cfg = load_config(DEFAULTS, argv)
    if cfg["mode"] not in ("baseline", "optimized"):
        raise SystemExit(f"error: mode must be 'baseline' or 'optimized', got {cfg['mode']!r}")
    optimized = cfg["mode"] == "optimized"
    seed_everything(int(cfg["seed"]))
    device, autocast = setup_device(cfg["device"])
    if not optimized:  # the baseline runs in plain fp32 (no autocast, no TF32 matmuls)
        autocast = contextlib.nullcontext
        if device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False

    micro = cfg["optimized_micro_batch"] if optimized else cfg["baseline_micro_batch"]
    micro = min(micro, cfg["batch_size"])
    if cfg["batch_size"] % micro:
        raise SystemExit(f"error: micro-batch {micro} does not divide batch_size {cfg['batch_size']}")
    accum = cfg["batch_size"] // micro

    # ---- data: the same sequences and the same order in both modes ---------------------
    gen = torch.Generator().manual_seed(int(cfg["seed"]))
    train_x, train_y = make_copy_data(cfg["num_samples"], cfg["seq_half"], cfg["vocab"], gen)
    val_x, val_y = make_copy_data(cfg["val_samples"], cfg["seq_half"], cfg["vocab"], gen)
    seq_len = train_x.size(1)
    steps_per_epoch = cfg["num_samples"] // cfg["batch_size"]
    if steps_per_epoch < 1 or cfg["epochs"] < 1:
        raise SystemExit("error: need epochs >= 1 and num_samples >= batch_size")

    # ---- model and optimiser (same init in both modes) -------------------------------
    model_cfg = ModelConfig(
        vocab_size=cfg["vocab"] + 1,
        block_size=seq_len,
        n_layer=cfg["n_layer"],
        n_head=cfg["n_head"],
        n_embd=cfg["n_embd"],
        attention="sdpa" if optimized else "manual",
    )
    model = GPT(model_cfg).to(device)
    params = count_params(model)
    optimizer = build_optimizer(model, cfg, optimized)
    use_compile = cfg["compile"] if cfg["compile"] is not None else (optimized and device.type == "cuda")
    step_model = torch.compile(model) if use_compile else model
    print(
        f"{cfg['mode']}: {params:,} params on {device}, batch {cfg['batch_size']} = {accum} x {micro}"
        f", {steps_per_epoch} steps/epoch, compile={bool(use_compile)}"
    )
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    # ---- training loop ------------------------------------------------------------------
    epoch_times, step, cpu_time = [], 0, 0.0
    tokens_per_epoch = steps_per_epoch * cfg["batch_size"] * seq_len
    train_loss = float("nan")
    for epoch in range(cfg["epochs"]):
        order = torch.randperm(cfg["num_samples"], generator=gen)
        sync()
        t0, c0 = time.perf_counter(), time.process_time()
        epoch_loss = torch.zeros((), device=device)
        for s in range(steps_per_epoch):
            idx = order[s * cfg["batch_size"] : (s + 1) * cfg["batch_size"]]
            xb, yb = train_x[idx].to(device, non_blocking=True), train_y[idx].to(device, non_blocking=True)
            for xm, ym in zip(xb.split(micro), yb.split(micro)):
                with autocast():
                    _, loss = step_model(xm, ym)
                (loss / accum).backward()
                epoch_loss += loss.detach() / accum
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
        train_loss = epoch_loss.item() / steps_per_epoch  # one host sync per epoch
        sync()
        epoch_time = time.perf_counter() - t0
        cpu_time += time.process_time() - c0
        check_finite(train_loss, step)
        epoch_times.append(epoch_time)
        studyc.log(step=step, loss=train_loss, epoch_time=epoch_time, throughput=tokens_per_epoch / epoch_time)
        print(
            f"epoch {epoch + 1}/{cfg['epochs']} | loss {train_loss:.4f} | {epoch_time:.2f}s"
            f" | {tokens_per_epoch / epoch_time:,.0f} tok/s"
        )

    total_time = sum(epoch_times)
    final_loss = evaluate(model, val_x, val_y, device)
    check_finite(final_loss, step, "final_loss")
    final = {
        "total_time": total_time,
        "avg_epoch_time": total_time / len(epoch_times),
        "final_loss": final_loss,
        "train_loss": train_loss,
        "throughput": tokens_per_epoch * len(epoch_times) / total_time,
        "samples_per_s": steps_per_epoch * cfg["batch_size"] * len(epoch_times) / total_time,
        "params": params,
        "peak_mem_mb": peak_mem_mb(device),
        "cpu_time": cpu_time,  # process CPU seconds in the timed epochs (robust to a busy host)
    }
    studyc.log(step=step, **final)
    print("final: " + ", ".join(f"{k}={v:.4g}" for k, v in final.items()))
    return final


if __name__ == "__main__":
    main()
