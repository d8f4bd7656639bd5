"""Latent-bridge example: tasks, the K/V-cached decoder, the translator and the trainer.

"""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")


from examples.latent_bridge import train as trainer  # noqa: E402
from examples.latent_bridge.data import VOCAB_SIZE, decode, make_splits  # noqa: E402
from examples.latent_bridge.models import DecoderLM, Translator, cache_bytes, infonce  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _own_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("STUDYC_CACHE", str(tmp_path / "cache"))

TOY = {
    "num_examples": 600,
    "source_dim": 32,
    "source_heads": 4,
    "source_steps": 30,
    "target_dim": 24,
    "target_heads": 4,
    "target_steps": 30,
    "pretrain_batch": 32,
    "soft_tokens": 3,
    "depth": 1,
    "bottleneck": 32,
    "heads": 4,
    "steps": 30,
    "warmup": 5,
    "batch_size": 32,
    "eval_interval": 5,
    "eval_examples": 100,
    "cascade_steps": 30,
    "device": "cpu",
}
FINAL = (
    "peak_acc",
    "final_acc",
    "degradation",
    "source_acc",
    "target_acc",
    "kv_cache_bytes",
    "kv_cache_text_bytes",
    "train_time",
    "params",
    "token_budget_acc",
    "cascade_acc",
    "kv_cache_cascade_bytes",
    "source_latency_ms",
    "target_latency_ms",
    "latent_latency_ms",
    "token_budget_latency_ms",
    "cascade_latency_ms",
    "peak_mem_mb",
)



def split_cfg(**kw) -> dict:
    return {**trainer.DEFAULTS, "num_examples": 300, **kw}


def test_arith_questions_and_answers_are_correct_and_splits_disjoint():
    train, val, test = make_splits(split_cfg(), seed=3)
    assert (len(train), len(val), len(test)) == (225, 15, 60)
    for q, a in zip(train.questions[:50], train.answers[:50]):
        text = decode(q)
        assert len(text) == 6 and text[2] == "+" and text[-1] == "="
        assert int(decode(a)) == int(text[:2]) + int(text[3:5])
    seen = {decode(q) for q in train.questions}
    assert not seen & {decode(q) for q in test.questions}
    assert not seen & {decode(q) for q in val.questions}


def test_multihop_answer_is_the_two_step_lookup():
    train, _, test = make_splits(split_cfg(dataset="multihop", entities=8, facts=4), seed=0)
    assert train.questions.shape[1] == 2 * 4 + 3 and train.answers.shape[1] == 2
    for q, a in zip(train.questions[:50], train.answers[:50]):
        text, ans = decode(q), decode(a)
        facts = dict(zip(text[0:8:2], text[1:8:2]))
        query = text[-2]
        assert ans == facts[query] + facts[facts[query]]
    assert not {decode(q) for q in train.questions} & {decode(q) for q in test.questions}


def test_splits_depend_on_seed_only():
    a, b, c = (make_splits(split_cfg(), seed=s)[0].questions for s in (0, 0, 1))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_decoder_cached_generation_matches_full_recompute_and_cache_size():
    torch.manual_seed(0)
    lm = DecoderLM(VOCAB_SIZE, max_len=12, dim=16, layers=2, heads=4).eval()
    prompt = lm.tok(torch.randint(VOCAB_SIZE, (5, 6)))
    tokens, cache = lm.generate(prompt, answer_len=4)
    assert tokens.shape == (5, 4)
    emb = prompt
    with torch.no_grad():
        for i in range(4):  # greedy decoding without a cache, one full pass per token
            _, logits, _ = lm(emb)
            nxt = logits[:, -1].argmax(-1)
            assert torch.equal(nxt, tokens[:, i])
            emb = torch.cat([emb, lm.tok(nxt)[:, None]], dim=1)
    # 2 layers x (K and V) x 6 positions x 16 channels x 4 bytes, per sequence
    assert cache_bytes(cache) == 2 * 2 * 6 * 16 * 4


def test_translator_shapes_and_infonce():
    torch.manual_seed(0)
    tr = Translator(source_dim=32, target_dim=24, soft_tokens=3, depth=2, bottleneck=16, heads=4)
    soft = tr(torch.randn(7, 9, 32))
    assert soft.shape == (7, 3, 24)
    loss = infonce(soft, torch.randn(7, 24), tr.align, temperature=0.1)
    assert loss.ndim == 0 and math.isfinite(loss.item())
    aligned = tr.align(soft.mean(dim=1)).detach()
    assert infonce(soft, aligned, tr.align, 0.1) < infonce(soft, aligned.roll(1, dims=0), tr.align, 0.1)


def test_main_logs_final_metrics_and_kv_cache_is_smaller(monkeypatch, tmp_path, run_main):
    final, records = run_main("a", seed=0, early_stopping=False)
    last = records[-1]
    for name in FINAL:
        assert name in last and math.isfinite(last[name]), name
    assert last["degradation"] == pytest.approx(last["peak_acc"] - last["final_acc"])
    assert last["degradation"] >= 0
    assert 0 <= last["final_acc"] <= last["peak_acc"] <= 1
    assert last["kv_cache_bytes"] < last["kv_cache_text_bytes"]  # 3 soft tokens vs 6 text tokens
    assert last["kv_cache_bytes"] * 2 == last["kv_cache_text_bytes"]
    evals = [r for r in records if "val_acc" in r]
    assert [r["step"] for r in evals] == [5, 10, 15, 20, 25, 30]
    assert all({"acc", "loss", "nce"} <= set(r) for r in evals)
    assert final["final_acc"] == evals[-1]["acc"]  # no early stopping: the last model

    again, _ = run_main("b", seed=0, early_stopping=False)
    other, _ = run_main("c", seed=1, early_stopping=False)
    same_keys = [k for k in FINAL if not k.endswith(("_time", "_latency_ms", "_mb"))]  # not clocks or RSS
    assert {k: again[k] for k in same_keys} == {k: final[k] for k in same_keys}
    assert (other["source_acc"], other["target_acc"], other["final_acc"]) != (
        final["source_acc"],
        final["target_acc"],
        final["final_acc"],
    )


def test_inference_baselines_token_budget_and_cascade(monkeypatch, tmp_path, run_main):
    final, _ = run_main("budget", soft_tokens=3, early_stopping=False)
    for name in ("token_budget_acc", "cascade_acc"):
        assert 0 <= final[name] <= 1
    # the cascade prompt is the 6-token question plus the source's 3-token answer
    assert final["kv_cache_cascade_bytes"] * 6 == final["kv_cache_text_bytes"] * 9
    assert all(final[f"{m}_latency_ms"] > 0 for m in ("source", "target", "latent", "token_budget", "cascade"))
    # a budget as long as the question is the full text prompt: target-alone, exactly
    full, _ = run_main("full", soft_tokens=6, early_stopping=False)
    assert full["token_budget_acc"] == full["target_acc"]


def test_generate_from_an_offset_matches_the_prompt_at_those_positions():
    torch.manual_seed(0)
    lm = DecoderLM(VOCAB_SIZE, max_len=12, dim=16, layers=1, heads=4).eval()
    ids = torch.randint(VOCAB_SIZE, (3, 6))
    tokens, _ = lm.generate(lm.tok(ids[:, 2:]), answer_len=3, start=2)
    with torch.no_grad():
        _, logits, _ = lm(lm.tok(ids[:, 2:]), start=2)
    assert torch.equal(tokens[:, 0], logits[:, -1].argmax(-1))
    with torch.no_grad():  # the offset matters: the same tokens at positions 0.. differ
        assert not torch.equal(logits, lm(lm.tok(ids[:, 2:]))[1])


def test_early_stopping_restores_the_best_validation_model(monkeypatch, tmp_path, run_main):
    final, records = run_main(
        "es", early_stopping=True, patience=2, infonce=False, lr=0.02, steps=60
    )
    evals = [r for r in records if "val_acc" in r]
    assert all("nce" not in r for r in evals)
    best = max(evals, key=lambda r: r["val_acc"])  # the first eval reaching the best val acc
    assert final["final_acc"] == pytest.approx(best["acc"])
    if final["stopped_step"] < 60:  # stopped: `patience` evals in a row without improvement
        assert len(evals) - 1 - evals.index(best) == 2


def test_multihop_run(monkeypatch, tmp_path, run_main):
    final, _ = run_main(
        "mh", dataset="multihop", steps=10, source_steps=10, target_steps=10, soft_tokens=4
    )
    assert final["kv_cache_bytes"] < final["kv_cache_text_bytes"]  # 4 soft tokens vs 9 text tokens
    assert all(math.isfinite(final[k]) for k in FINAL)


def test_nan_loss_exits_nonzero(monkeypatch, tmp_path, capsys, run_main):
    real = trainer.infonce

    def poisoned(*args, **kwargs):
        return real(*args, **kwargs) * float("nan")

    monkeypatch.setattr(trainer, "infonce", poisoned)
    with pytest.raises(SystemExit) as exc:
        run_main("nan", steps=5)
    assert exc.value.code not in (0, None)
    assert "nan" in capsys.readouterr().err.lower()


def test_benchmark_reruns_the_five_baselines_from_the_saved_models(monkeypatch, tmp_path, run_main):
    from examples.latent_bridge import benchmark

    trained, _ = run_main("train", early_stopping=False)
    assert (tmp_path / "train" / "checkpoints" / benchmark.CHECKPOINT).exists()
    monkeypatch.setenv("STUDYC_SOURCE_RUN_DIR", str(tmp_path / "train"))
    monkeypatch.setenv("STUDYC_RUN_DIR", str(tmp_path / "bench"))
    again = benchmark.main([])
    # the same models on the same test questions: the same answers, caches and accuracies
    for name in ("source_acc", "target_acc", "final_acc", "token_budget_acc", "cascade_acc",
                 "kv_cache_bytes", "kv_cache_text_bytes", "kv_cache_cascade_bytes"):
        assert again[name] == trained[name], name
    assert all(again[f"{m}_latency_ms"] > 0 for m in ("source", "target", "latent", "token_budget", "cascade"))
    monkeypatch.delenv("STUDYC_SOURCE_RUN_DIR")
    with pytest.raises(SystemExit, match="no run to benchmark"):
        benchmark.main([])
    with pytest.raises(SystemExit, match="saved no models"):
        benchmark.main(["--source", str(tmp_path / "nowhere")])


def test_pretrained_lms_are_remembered_and_a_hit_computes_the_same_run(monkeypatch, tmp_path, run_main):
    cold, _ = run_main("cold", early_stopping=False)
    cached = sorted((tmp_path / "cache" / "latent_bridge").glob("lm_*.pt"))
    assert len(cached) == 2  # the source and the target
    warm, _ = run_main("warm", early_stopping=False)
    assert sorted((tmp_path / "cache" / "latent_bridge").glob("lm_*.pt")) == cached  # both hit
    off, _ = run_main("off", early_stopping=False, cache=False)
    keys = [k for k in FINAL if not k.endswith(("_time", "_latency_ms", "_mb"))]
    assert {k: warm[k] for k in keys} == {k: cold[k] for k in keys} == {k: off[k] for k in keys}
    # another arm sharing the LMs (a different translator) hits them; another seed does not
    run_main("other_arm", early_stopping=False, soft_tokens=2)
    run_main("other_seed", early_stopping=False, seed=1)
    assert len(list((tmp_path / "cache" / "latent_bridge").glob("lm_*.pt"))) == 4
