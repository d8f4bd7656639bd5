"""Baseline vs optimised training of the same small transformer.

Run by studyc as ``python -m examples.speedup.train`` or by hand:
``python -m examples.speedup.train --set mode=optimized`` (``--set mode=both`` trains
the baseline, then the optimized model, in one process, as the seed's
train_scaled_model.py does).

Both modes train the same model (same init, same seed) on the same synthetic copy task,
with the same batches, the same effective batch size and the same number of optimizer
steps, so their final losses are comparable. What differs is *how* a step runs, set by
``kernel_level`` (null: 0 for the baseline, 3 for the optimized mode); each level adds
to the one below:

  0  explicit softmax(QK^T)V attention; torch.optim.AdamW(foreach=False); small
     micro-batches (``baseline_micro_batch``) with gradient accumulation; fp32
     everywhere (TF32 matmuls off on CUDA).
  1  fused F.scaled_dot_product_attention.
  2  AdamW(fused=True) where supported, else foreach=True; large micro-batches
     (``optimized_micro_batch``), less accumulation.
  3  bf16 autocast on CUDA; torch.compile when ``compile`` is true (null = only on
     CUDA, where it pays; off on CPU).

``compression_ratio`` (optimized mode only; null = off) factors every feed-forward weight
through a rank of ``ceil(ratio * n_embd)``: low-rank weight compression, the stand-in for
the seed's "Semantic Compressor: Ratio 0.3". Unlike the kernel levels it changes the
function learned, so the two modes' final losses may differ. ``ff_dim`` sets the
feed-forward width (null: 4 * n_embd).

Logs per epoch: loss (mean train loss), epoch_time, throughput (tokens/s). Final:
total_time, avg_epoch_time, final_loss (held-out loss, measured outside the timed
region), train_loss, throughput, samples_per_s, params, peak_mem_mb, cpu_time (process
CPU seconds of the timed epochs: on a shared CPU host it is steadier than wall time).
With ``mode: both`` only the finals are logged, each prefixed with its mode
(baseline_total_time, ...), plus the comparison: speedup, throughput_gain,
loss_difference and all_criteria_met (1 or 0).

In its run directory (when studyc gives one) a run saves each mode's trained model as
``checkpoints/<mode>.pt`` (model and optimizer state, config, epochs, final loss, total
time) and writes ``COMPARISON_FILE`` in the seed's layout: a section per mode trained
(total_time, avg_epoch_time, final_loss, per-epoch losses, throughput, params) and, when
both modes were trained, the comparison with all_criteria_met.
"""

from __future__ import annotations

import contextlib
import json
import math
import time

import torch

import studyc
from examples._common import check_finite, count_params, load_config, peak_mem_mb, seed_everything, setup_device
from examples.speedup.data import make_copy_data
from examples.speedup.model import GPT, ModelConfig

DEFAULTS = {
    "mode": "baseline",  # "baseline", "optimized" or "both" (one after the other)
    "kernel_level": None,  # 0-3 (see above); null: 0 for the baseline, 3 for optimized
    "compression_ratio": None,  # optimized mode: low-rank feed-forward weights; null: dense
    # model
    "n_layer": 4,
    "n_head": 4,
    "n_embd": 128,
    "ff_dim": None,  # null: 4 * n_embd
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
    "compile": None,  # null: compile only on CUDA at kernel level 3; true/false forces it
    "seed": 0,
    "device": "auto",
}
MODES = ("baseline", "optimized")
COMPARISON_FILE = "phase3_stage3a_comparison.json"
# The seed's success criteria: speedup >= 25%, final losses within 0.1, throughput +20%.
MIN_SPEEDUP, MAX_LOSS_DIFFERENCE, MIN_THROUGHPUT_GAIN = 0.25, 0.1, 0.20


def build_optimizer(model: torch.nn.Module, cfg: dict, fused: bool) -> torch.optim.Optimizer:
    kwargs = {"lr": cfg["lr"], "weight_decay": cfg["weight_decay"]}
    if not fused:
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


def settings(cfg: dict, mode: str) -> tuple[int, int | None]:
    """(kernel level, feed-forward rank or None) of ``mode``; the baseline is never compressed."""
    level = cfg["kernel_level"]
    if level is None:
        level = 3 if mode == "optimized" else 0
    if level not in (0, 1, 2, 3):
        raise SystemExit(f"error: kernel_level must be 0, 1, 2 or 3, got {level!r}")
    ratio = cfg["compression_ratio"] if mode == "optimized" else None
    if ratio is not None and not (isinstance(ratio, (int, float)) and 0 < ratio <= 1):
        raise SystemExit(f"error: compression_ratio must be in (0, 1] or null, got {ratio!r}")
    return level, (None if ratio is None else math.ceil(ratio * cfg["n_embd"]))


def train(cfg: dict, mode: str, log: bool = True) -> tuple[dict, list[float]]:
    """Train ``mode`` from the seed; returns its final metrics and per-epoch train losses."""
    level, ff_rank = settings(cfg, mode)
    seed_everything(int(cfg["seed"]))
    device, autocast = setup_device(cfg["device"])
    if level < 3:  # plain fp32 (no autocast, no TF32 matmuls)
        autocast = contextlib.nullcontext
        if device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False

    micro = cfg["optimized_micro_batch"] if level >= 2 else cfg["baseline_micro_batch"]
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
        attention="sdpa" if level >= 1 else "manual",
        ff_dim=cfg["ff_dim"],
        ff_rank=ff_rank,
    )
    model = GPT(model_cfg).to(device)
    params = count_params(model)
    optimizer = build_optimizer(model, cfg, fused=level >= 2)
    use_compile = level >= 3 and bool(cfg["compile"] if cfg["compile"] is not None else device.type == "cuda")
    step_model = torch.compile(model) if use_compile else model
    print(
        f"{mode}: {params:,} params on {device}, kernel level {level}, feed-forward rank {ff_rank or 'full'}"
        f", batch {cfg['batch_size']} = {accum} x {micro}, {steps_per_epoch} steps/epoch, compile={use_compile}"
    )
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    # ---- training loop ------------------------------------------------------------------
    epoch_times, losses, step, cpu_time = [], [], 0, 0.0
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
        losses.append(train_loss)
        if log:
            studyc.log(step=step, loss=train_loss, epoch_time=epoch_time, throughput=tokens_per_epoch / epoch_time)
        print(
            f"{mode} epoch {epoch + 1}/{cfg['epochs']} | loss {train_loss:.4f} | {epoch_time:.2f}s"
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
    ckpt_dir = studyc.checkpoint_dir()
    if ckpt_dir is not None:
        state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "config": cfg,
                 "epochs": cfg["epochs"], "final_loss": final_loss, "total_time": total_time}
        torch.save(state, ckpt_dir / f"{mode}.pt")
    if log:
        studyc.log(step=step, **final)
    print(f"{mode} final: " + ", ".join(f"{k}={v:.4g}" for k, v in final.items()))
    return final, losses


def comparison(results: dict[str, tuple[dict, list[float]]]) -> dict:
    """The seed's comparison JSON: a section per mode trained; the verdicts when both were."""
    out: dict = {"stage": "3a", "model": "ScaledTransformerModel"}
    for mode, (final, losses) in results.items():
        keys = ("total_time", "avg_epoch_time", "final_loss", "throughput", "params")
        out[mode] = {**{k: final[k] for k in keys}, "losses": losses}
    if set(results) == set(MODES):
        base, opt = results["baseline"][0], results["optimized"][0]
        speedup = 1 - opt["total_time"] / base["total_time"]
        gain = opt["throughput"] / base["throughput"] - 1
        difference = abs(opt["final_loss"] - base["final_loss"])
        out["comparison"] = {
            "speedup_percent": 100 * speedup,
            "throughput_improvement_percent": 100 * gain,
            "loss_difference": difference,
            "loss_convergence_match": difference < MAX_LOSS_DIFFERENCE,
            "all_criteria_met": speedup >= MIN_SPEEDUP
            and difference < MAX_LOSS_DIFFERENCE
            and gain >= MIN_THROUGHPUT_GAIN,
        }
    return out


def main(argv: list[str] | None = None) -> dict:
    cfg = load_config(DEFAULTS, argv)
    if cfg["mode"] not in (*MODES, "both"):
        raise SystemExit(f"error: mode must be 'baseline', 'optimized' or 'both', got {cfg['mode']!r}")
    modes = MODES if cfg["mode"] == "both" else (cfg["mode"],)
    results = {mode: train(cfg, mode, log=len(modes) == 1) for mode in modes}
    report = comparison(results)
    if len(modes) == 1:
        final = results[modes[0]][0]
    else:  # one run, both modes: the prefixed finals and the comparison
        final = {f"{mode}_{k}": v for mode in modes for k, v in results[mode][0].items()}
        verdict = report["comparison"]
        final.update(
            speedup=verdict["speedup_percent"] / 100,
            throughput_gain=verdict["throughput_improvement_percent"] / 100,
            loss_difference=verdict["loss_difference"],
            all_criteria_met=float(verdict["all_criteria_met"]),
        )
        studyc.log(step=cfg["epochs"], **final)
    run_dir = studyc.run_dir()
    if run_dir is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / COMPARISON_FILE).write_text(json.dumps(report, indent=2) + "\n")
    return final


if __name__ == "__main__":
    main()
