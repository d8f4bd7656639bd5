"""Ablation 4 of seed 001: the five inference baselines, benchmarked on trained models.

Run by studyc as an evaluation stage (``evaluate: python -m examples.latent_bridge.benchmark``):
the run it benchmarks is named by $STUDYC_SOURCE_RUN_DIR (by hand: ``--source RUN_DIR``);
its ``checkpoints/bridge.pt`` (written by examples.latent_bridge.train) holds the config
and the trained source, target, translator and cascade. The test questions are rebuilt
from that config and seed; ``eval_examples`` from this run's config, when given, sets
how many are answered (the seed's 1,319).

The five baselines, each answering every test question greedily:
  source-alone   question -> source -> answer
  target-alone   the full text question -> target
  latent         question -> source (reads and answers) -> translator -> K soft tokens -> target
  token-budget   the last K question tokens, at their own positions -> target
  cascade        question + the source's text answer -> the cascade copy of the target

Logs once: source_acc, target_acc, final_acc (latent), token_budget_acc, cascade_acc,
kv_cache_bytes (latent prompt), kv_cache_text_bytes (text prompt),
kv_cache_cascade_bytes, <method>_latency_ms (milliseconds per question, batches of 512;
latent and cascade include the source's pass), peak_mem_mb. The trainer ends with the
same benchmark on its own test questions.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import torch

import studyc
from examples._common import peak_mem_mb, setup_device
from examples.latent_bridge.data import VOCAB_SIZE, Split, make_splits
from examples.latent_bridge.models import DecoderLM, Translator, cache_bytes, exact_match

CHECKPOINT = "bridge.pt"


@torch.no_grad()
def decode_acc(lm: DecoderLM, prompts, answers: torch.Tensor, a_len: int, autocast, start: int = 0) -> float:
    """Greedy exact-match accuracy of ``lm`` over batches of prompt embeddings."""
    preds = []
    for prompt in prompts:
        with autocast():
            pred, _ = lm.generate(prompt, a_len, start=start)
        preds.append(pred)
    return exact_match(torch.cat(preds), answers)


def text_prompts(lm: DecoderLM, questions: torch.Tensor):
    return (lm.tok(q) for q in questions.split(512))


@torch.no_grad()
def source_states(
    source: DecoderLM, questions: torch.Tensor, a_len: int, autocast
) -> tuple[torch.Tensor, torch.Tensor]:
    """The frozen source reads each question and writes its own greedy answer; returns its
    final hidden states over [question, its answer] and the answers."""
    states, answers = [], []
    for q in questions.split(512):
        with autocast():
            pred, _ = source.generate(source.tok(q), a_len)
            states.append(source(source.tok(torch.cat([q, pred], dim=1)))[0].float())
        answers.append(pred)
    return torch.cat(states), torch.cat(answers)


def build_lm(cfg: dict, prefix: str, q_len: int, a_len: int) -> DecoderLM:
    """An untrained "source" or "target" LM shaped by ``cfg``, with room for the cascade's
    prompt (question + an answer) and its answer."""
    max_len = max(q_len + a_len, cfg["soft_tokens"]) + a_len
    return DecoderLM(VOCAB_SIZE, max_len, cfg[f"{prefix}_dim"], cfg[f"{prefix}_layers"], cfg[f"{prefix}_heads"])


def translator_for(cfg: dict) -> Translator:
    return Translator(
        cfg["source_dim"], cfg["target_dim"], cfg["soft_tokens"], cfg["depth"], cfg["bottleneck"], cfg["heads"]
    )


@torch.no_grad()
def benchmark(
    source: DecoderLM, target: DecoderLM, translator: Translator, cascade: DecoderLM, test: Split, autocast
) -> dict:
    """Accuracy, K/V cache and latency of the five baselines on ``test``."""
    translator.eval()
    q_len, a_len = test.questions.size(1), test.answers.size(1)
    k = min(translator.queries.size(0), q_len)
    clock: dict[str, float] = {}

    def timed(name: str, fn):
        t = time.perf_counter()
        out = fn()
        clock[name] = time.perf_counter() - t
        return out

    def acc(lm: DecoderLM, prompts, start: int = 0) -> float:
        return decode_acc(lm, prompts, test.answers, a_len, autocast, start)

    states, source_answers = timed("source_pass", lambda: source_states(source, test.questions, a_len, autocast))
    cascade_questions = torch.cat([test.questions, source_answers], dim=1)
    out = {
        "source_acc": timed("source", lambda: acc(source, text_prompts(source, test.questions))),
        "target_acc": timed("target", lambda: acc(target, text_prompts(target, test.questions))),
        "final_acc": timed("latent", lambda: acc(target, (translator(h) for h in states.split(512)))),
        "token_budget_acc": timed(
            "token_budget", lambda: acc(target, text_prompts(target, test.questions[:, q_len - k :]), start=q_len - k)
        ),
        "cascade_acc": timed("cascade", lambda: acc(cascade, text_prompts(cascade, cascade_questions))),
    }
    with autocast():  # the target's K/V cache for one prompt of each kind
        out["kv_cache_bytes"] = cache_bytes(target(translator(states[:1]))[2])
        out["kv_cache_text_bytes"] = cache_bytes(target(target.tok(test.questions[:1]))[2])
        out["kv_cache_cascade_bytes"] = cache_bytes(cascade(cascade.tok(cascade_questions[:1]))[2])
    ms = 1000 / len(test)
    for name in ("source", "target", "token_budget"):
        out[f"{name}_latency_ms"] = clock[name] * ms
    for name in ("latent", "cascade"):  # the source reads and answers first
        out[f"{name}_latency_ms"] = (clock["source_pass"] + clock[name]) * ms
    return out


def source_dir(argv: list[str]) -> Path:
    if argv[:1] == ["--source"] and len(argv) == 2:
        return Path(argv[1])
    if argv:
        raise SystemExit(f"error: unknown arguments {argv}; usage: benchmark [--source RUN_DIR]")
    value = os.environ.get("STUDYC_SOURCE_RUN_DIR")
    if not value:
        raise SystemExit("error: no run to benchmark: set STUDYC_SOURCE_RUN_DIR (studyc does, in an evaluation "
                         "stage) or pass --source RUN_DIR")
    return Path(value)


def main(argv: list[str] | None = None) -> dict:
    path = source_dir(sys.argv[1:] if argv is None else argv) / "checkpoints" / CHECKPOINT
    if not path.exists():
        raise SystemExit(f"error: {path} does not exist: the benchmarked run saved no models (did it finish?)")
    saved = torch.load(path, map_location="cpu", weights_only=True)
    cfg = dict(saved["config"])
    cfg["eval_examples"] = studyc.config().get("eval_examples", cfg["eval_examples"])
    device, autocast = setup_device(cfg["device"])
    _, _, test = make_splits(cfg, int(cfg["seed"]))
    test = Split(test.questions[: cfg["eval_examples"]].to(device), test.answers[: cfg["eval_examples"]].to(device))
    q_len, a_len = test.questions.size(1), test.answers.size(1)
    source, target, cascade = (build_lm(cfg, p, q_len, a_len) for p in ("source", "target", "target"))
    translator = translator_for(cfg)
    for module, key in ((source, "source"), (target, "target"), (cascade, "cascade"), (translator, "translator")):
        module.load_state_dict(saved[key])
        module.to(device).eval()
    print(f"benchmarking {path} on {len(test)} {cfg['dataset']} test questions, device={device}")
    results = {**benchmark(source, target, translator, cascade, test, autocast), "peak_mem_mb": peak_mem_mb(device)}
    studyc.log(step=saved["step"], **results)
    print("final: " + ", ".join(f"{k}={v:.4g}" for k, v in results.items()))
    return results


if __name__ == "__main__":
    main()
