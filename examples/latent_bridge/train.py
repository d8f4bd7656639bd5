"""Latent bridge miniature: a source model's hidden states, compressed into K soft tokens,
prompt a separate target model (a tiny stand-in for Mistral -> Llama latent translation).

Run by studyc as ``python -m examples.latent_bridge.train`` or by hand:
``python -m examples.latent_bridge.train --set infonce=false --set early_stopping=false``.

Stages, all seeded:
  1. data     ``dataset`` (arith | multihop) questions, split train / val / test.
  2. source   a small decoder LM pre-trained on train as a text LM on question -> answer
              (``source_acc``: its own greedy answer on test), then frozen. It reads
              each question and writes its own answer; its final hidden states over
              both (its "latent reasoning") are what the bridge reads.
  3. target   a second, different decoder LM (own width, heads, embeddings) pre-trained
              the same way (``target_acc``: greedy answer given the question text),
              then frozen.
  4. bridge   only the translator is trained: K soft tokens from the source's hidden
              states prompt the frozen target, cross-entropy on the answer, optionally
              plus an InfoNCE loss aligning the pooled soft tokens with the target's own
              hidden state of the text question (``infonce``). Linear warmup, then
              constant ``lr``. ``early_stopping`` watches val accuracy and, after
              ``patience`` evals without improvement, stops and restores the best.
  5. baselines the seed's five inference baselines on the same test questions
              (``examples.latent_bridge.benchmark``, which also runs them again on a
              finished run's saved models, as an evaluation stage):
              source-alone and target-alone (above), latent (the bridge), token-budget
              (the frozen target reads only the last K question tokens, at their own
              positions: the same prompt length as the K soft tokens), and cascade (the
              source's text answer appended to the question, read by a copy of the
              target fine-tuned for ``cascade_steps`` on the source's answers to the
              training questions: the small target cannot follow a refinement prompt
              zero-shot as an instruction-tuned Llama does).

Logs per eval: acc (bridged exact match on test), val_acc, loss (train CE since last
eval), nce (with infonce). Final: peak_acc, final_acc, degradation (= peak - final),
source_acc, target_acc, token_budget_acc, cascade_acc, kv_cache_bytes (target K/V cache
for the soft prompt, one sequence), kv_cache_text_bytes (same for the text prompt),
kv_cache_cascade_bytes (question + source answer), <method>_latency_ms for source,
target, latent, token_budget and cascade (end-to-end greedy answering of the test
questions in batches, milliseconds per question; latent and cascade include the
source's pass), train_time (bridge stage), pretrain_time, cascade_time, peak_mem_mb
(CUDA peak allocated, else the process's peak RSS), params (translator), stopped_step.
With a run directory the trained source, target, translator and cascade are saved to
``checkpoints/bridge.pt`` with the config. Pre-trained source and target LMs are
remembered under $STUDYC_CACHE/latent_bridge (``cache``; see ``pretrain_lm``): arms that
share them, as most of seed 001's do, pre-train them once.
"""

from __future__ import annotations

import copy
import hashlib
import math
import os
import time
from pathlib import Path

import torch

import studyc
from examples._common import check_finite, count_params, load_config, peak_mem_mb, seed_everything, setup_device
from examples.latent_bridge.benchmark import (
    CHECKPOINT,
    benchmark,
    build_lm,
    decode_acc,
    source_states,
    text_prompts,
    translator_for,
)
from examples.latent_bridge.data import Split, make_splits
from examples.latent_bridge.models import DecoderLM, exact_match, infonce, warmup_lr

DEFAULTS = {
    # data
    "dataset": "arith",  # "arith" or "multihop"
    "digits": 2,  # arith: operand digits
    "entities": 6,  # multihop: entity alphabet size
    "facts": 3,  # multihop: facts per question (2 on the chain, the rest distractors)
    "num_examples": 10000,
    "val_fraction": 0.05,
    "test_fraction": 0.2,
    # source model ("Mistral"), pre-trained then frozen. One layer suffices for arith;
    # multihop needs two (a two-step lookup composes two attention hops).
    "source_dim": 64,
    "source_layers": 1,
    "source_heads": 8,
    "source_steps": 600,
    "source_lr": 1e-2,
    # target model ("Llama"), pre-trained then frozen
    "target_dim": 48,
    "target_layers": 1,
    "target_heads": 8,
    "target_steps": 600,
    "target_lr": 1e-2,
    "pretrain_batch": 64,
    # translator (the only part trained in the bridge stage)
    "soft_tokens": 4,  # K
    "depth": 2,
    "bottleneck": 64,
    "heads": 4,
    # bridge training
    "lr": 3e-3,
    "warmup": 50,
    "steps": 1000,
    "batch_size": 128,
    "weight_decay": 0.0,
    "grad_clip": 1.0,  # 0 or null: no clipping
    "infonce": True,
    "infonce_weight": 0.5,
    "temperature": 0.1,
    "early_stopping": True,
    "patience": 5,
    "eval_interval": 50,
    "eval_examples": 1000,  # test questions scored per eval (all of val is used)
    # cascade baseline: the target fine-tuned on [question, source's answer] -> answer
    "cascade_steps": 300,
    "cascade_lr": 3e-3,
    "cache": True,  # remember pre-trained LMs (see pretrain_lm) under $STUDYC_CACHE/latent_bridge
    "seed": 0,
    "device": "auto",
}


def pretrain(
    model: torch.nn.Module, loss_fn, split: Split, steps: int, lr: float, cfg: dict, gen: torch.Generator, autocast
) -> float:
    """Plain AdamW with warmup + cosine decay; returns the mean loss of the last 50 steps."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    recent = []
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = lr * min(1.0, (step + 1) / 50) * 0.5 * (1 + math.cos(math.pi * step / steps))
        idx = torch.randint(len(split), (cfg["pretrain_batch"],), generator=gen).to(split.questions.device)
        with autocast():
            loss = loss_fn(split.questions[idx], split.answers[idx])
        check_finite(loss.item(), step, "pretrain_loss")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        recent = (recent + [loss.item()])[-50:]
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return sum(recent) / max(1, len(recent))


def cache_dir() -> Path:
    base = os.environ.get("STUDYC_CACHE")
    return Path(base) / "latent_bridge" if base else Path.home() / ".cache" / "studyc" / "latent_bridge"


def pretrain_lm(
    lm: DecoderLM, split: Split, steps: int, lr: float, cfg: dict, gen: torch.Generator, autocast
) -> float:
    """``pretrain`` of a text LM on question -> answer, remembered on disk when ``cache`` is on.

    The key hashes every input of the computation (the initial weights, the data, the
    generator's state, the settings, the device and torch version), and a hit restores
    the trained weights and the generator's state after training, so a run that hits the
    cache computes exactly what it would have: arms that share their LMs (the same data,
    seed and LM settings) pre-train them once.
    """
    settings = (steps, lr, cfg["pretrain_batch"], str(split.questions.device), torch.__version__)
    key = hashlib.sha256(repr(settings).encode())
    for t in (*lm.state_dict().values(), split.questions, split.answers, gen.get_state()):
        key.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    path = cache_dir() / f"lm_{key.hexdigest()[:40]}.pt"
    if cfg["cache"] and path.exists():
        saved = torch.load(path, map_location=split.questions.device, weights_only=True)
        lm.load_state_dict(saved["state"])
        gen.set_state(saved["gen"])
        lm.eval().requires_grad_(False)
        return float(saved["loss"])
    loss = pretrain(lm, lambda q, a: lm.answer_loss(lm.tok(q), a), split, steps, lr, cfg, gen, autocast)
    if cfg["cache"]:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        torch.save({"state": lm.state_dict(), "gen": gen.get_state(), "loss": loss}, tmp)
        os.replace(tmp, path)  # atomic: a run reading it sees all of it or none
    return loss


def main(argv: list[str] | None = None) -> dict:
    cfg = load_config(DEFAULTS, argv)
    seed = int(cfg["seed"])
    seed_everything(seed)
    device, autocast = setup_device(cfg["device"])
    gen = torch.Generator().manual_seed(seed)

    # ---- 1. data ------------------------------------------------------------------------
    train, val, test = make_splits(cfg, seed)
    train, val, test = (Split(s.questions.to(device), s.answers.to(device)) for s in (train, val, test))
    q_len, a_len = train.questions.size(1), train.answers.size(1)
    test_eval = Split(test.questions[: cfg["eval_examples"]], test.answers[: cfg["eval_examples"]])
    print(
        f"{cfg['dataset']}: {len(train)} train / {len(val)} val / {len(test)} test,"
        f" question {q_len} tokens, answer {a_len}, soft tokens {cfg['soft_tokens']}"
    )

    # ---- 2. source and 3. target: two different decoder LMs, pre-trained on the text ----
    t_pre = time.perf_counter()

    source = build_lm(cfg, "source", q_len, a_len).to(device)
    src_loss = pretrain_lm(source, train, cfg["source_steps"], cfg["source_lr"], cfg, gen, autocast)

    hs_test, source_pred = source_states(source, test_eval.questions, a_len, autocast)
    print(f"source: loss {src_loss:.3f}, test exact match {exact_match(source_pred, test_eval.answers):.3f}")
    hs_train, source_train_pred = source_states(source, train.questions, a_len, autocast)
    hs_val = source_states(source, val.questions, a_len, autocast)[0]

    target = build_lm(cfg, "target", q_len, a_len).to(device)
    tgt_loss = pretrain_lm(target, train, cfg["target_steps"], cfg["target_lr"], cfg, gen, autocast)
    with torch.no_grad(), autocast():  # InfoNCE anchors: target's state at the question's end
        anchors = torch.cat([target(p)[0][:, -1].float() for p in text_prompts(target, train.questions)])
    pretrain_time = time.perf_counter() - t_pre
    print(f"target: loss {tgt_loss:.3f} ({pretrain_time:.1f}s)")

    # ---- 4. bridge: train the translator only -------------------------------------------------
    translator = translator_for(cfg).to(device)
    params = count_params(translator)
    optimizer = torch.optim.AdamW(translator.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])

    def bridge_acc(states: torch.Tensor, answers: torch.Tensor) -> float:
        translator.eval()
        with torch.no_grad(), autocast():
            acc = decode_acc(target, (translator(h) for h in states.split(512)), answers, a_len, autocast)
        translator.train()
        return acc

    t0 = time.perf_counter()
    peak_acc, best_val, best_state, bad_evals = -1.0, -1.0, None, 0
    running_ce, running_nce, count, step = 0.0, 0.0, 0, 0
    for step in range(1, cfg["steps"] + 1):
        for group in optimizer.param_groups:
            group["lr"] = warmup_lr(step - 1, cfg["lr"], cfg["warmup"])
        idx = torch.randint(len(train), (cfg["batch_size"],), generator=gen).to(device)
        with autocast():
            soft = translator(hs_train[idx])
            ce = target.answer_loss(soft, train.answers[idx])
            loss = ce
            if cfg["infonce"]:
                nce = infonce(soft, anchors[idx], translator.align, cfg["temperature"])
                loss = ce + cfg["infonce_weight"] * nce
                running_nce += nce.item()
        check_finite(loss.item(), step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg["grad_clip"]:
            torch.nn.utils.clip_grad_norm_(translator.parameters(), cfg["grad_clip"])
        optimizer.step()
        running_ce, count = running_ce + ce.item(), count + 1

        if step % cfg["eval_interval"] == 0 or step == cfg["steps"]:
            acc = bridge_acc(hs_test, test_eval.answers)
            val_acc = bridge_acc(hs_val, val.answers)
            peak_acc = max(peak_acc, acc)
            metrics = {"acc": acc, "val_acc": val_acc, "loss": running_ce / count}
            if cfg["infonce"]:
                metrics["nce"] = running_nce / count
            studyc.log(step=step, **metrics)
            print(
                f"step {step:5d} | loss {running_ce / count:.4f} | acc {acc:.3f} | val {val_acc:.3f}"
                f" | {time.perf_counter() - t0:.1f}s"
            )
            running_ce, running_nce, count = 0.0, 0.0, 0
            if val_acc > best_val:
                best_val, bad_evals = val_acc, 0
                if cfg["early_stopping"]:
                    best_state = copy.deepcopy(translator.state_dict())
            else:
                bad_evals += 1
            if cfg["early_stopping"] and bad_evals >= cfg["patience"]:
                print(f"early stop at step {step}: {bad_evals} evals without beating val acc {best_val:.3f}")
                break
    if cfg["early_stopping"] and best_state is not None:
        translator.load_state_dict(best_state)
    train_time = time.perf_counter() - t0

    # ---- 5. the cascade baseline's refiner: the target fine-tuned on the source's answers ----
    t_cascade = time.perf_counter()
    cascade = copy.deepcopy(target).requires_grad_(True).train()
    cascade_train = Split(torch.cat([train.questions, source_train_pred], dim=1), train.answers)
    pretrain(
        cascade,
        lambda q, a: cascade.answer_loss(cascade.tok(q), a),
        cascade_train,
        cfg["cascade_steps"],
        cfg["cascade_lr"],
        cfg,
        gen,
        autocast,
    )
    cascade_time = time.perf_counter() - t_cascade

    # ---- the five inference baselines (Ablation 4) on the test questions --------------------
    bench = benchmark(source, target, translator, cascade, test_eval, autocast)
    print(", ".join(f"{k} {bench[k]:.3f}" for k in ("source_acc", "target_acc", "final_acc", "token_budget_acc",
                                                     "cascade_acc")))
    peak_acc = max(peak_acc, bench["final_acc"])
    final = {
        "peak_acc": peak_acc,
        "final_acc": bench["final_acc"],
        "degradation": peak_acc - bench["final_acc"],
        **bench,
        "train_time": train_time,
        "pretrain_time": pretrain_time,
        "cascade_time": cascade_time,
        "peak_mem_mb": peak_mem_mb(device),
        "params": params,
        "stopped_step": step,
    }
    ckpt_dir = studyc.checkpoint_dir()
    if ckpt_dir is not None:  # what the benchmark needs to run again, as an evaluation stage
        models = {"source": source, "target": target, "translator": translator, "cascade": cascade}
        state = {name: m.state_dict() for name, m in models.items()}
        torch.save({**state, "config": cfg, "step": step}, ckpt_dir / CHECKPOINT)
    studyc.log(step=step, **final)
    print("final: " + ", ".join(f"{k}={v:.4g}" for k, v in final.items()))
    return final


if __name__ == "__main__":
    main()
