"""Synthetic question/answer tasks for the latent-bridge miniature, generated from the seed.

``arith``     "07+45=" -> "052": zero-padded addition of two ``digits``-digit numbers.
``multihop``  "dbacfe?a=" -> "cb": a shuffled list of facts (pairs "xy" meaning x -> y)
              and a query entity; the answer is the two-step lookup x -> y -> z, bridge
              entity first (a stand-in for HotpotQA's bridge questions: the context must
              be read, one hop alone does not answer it).

Every question of a task has the same length, and so does every answer, so batches need
no padding. Both tasks share one character vocabulary (the source and target models get
their own embeddings of it).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

CHARS = "0123456789+=?abcdefghijklmnop"
STOI = {ch: i for i, ch in enumerate(CHARS)}
VOCAB_SIZE = len(CHARS)


def encode(strings: list[str]) -> torch.Tensor:
    return torch.tensor([[STOI[ch] for ch in s] for s in strings], dtype=torch.long)


def decode(row: torch.Tensor | list[int]) -> str:
    return "".join(CHARS[i] for i in list(row))


@dataclass
class Split:
    questions: torch.Tensor  # (N, Lq) long
    answers: torch.Tensor  # (N, A) long

    def __len__(self) -> int:
        return len(self.questions)


def arith_examples(n: int, digits: int, rng: random.Random) -> list[tuple[str, str]]:
    total = 10 ** (2 * digits)
    if n > total:
        raise ValueError(f"arith with digits={digits} has only {total} distinct questions, asked for {n}")
    picks = rng.sample(range(total), n)
    out = []
    for p in picks:
        a, b = divmod(p, 10**digits)
        out.append((f"{a:0{digits}d}+{b:0{digits}d}=", f"{a + b:0{digits + 1}d}"))
    return out


def multihop_examples(n: int, entities: int, facts: int, rng: random.Random) -> list[tuple[str, str]]:
    if not 2 <= facts <= entities - 1 or entities > 16:
        raise ValueError("multihop needs 2 <= facts <= entities - 1 and entities <= 16")
    letters = CHARS[CHARS.index("a") : CHARS.index("a") + entities]
    seen: set[str] = set()
    out = []
    while len(out) < n:
        x, y, z = rng.sample(letters, 3)
        sources = [x, y] + rng.sample([e for e in letters if e not in (x, y)], facts - 2)
        pairs = [(x, y), (y, z)] + [(s, rng.choice(letters)) for s in sources[2:]]
        rng.shuffle(pairs)
        question = "".join(s + t for s, t in pairs) + "?" + x + "="
        if question not in seen:
            seen.add(question)
            out.append((question, y + z))
    return out


def make_splits(cfg: dict, seed: int) -> tuple[Split, Split, Split]:
    """(train, val, test) for ``cfg['dataset']``; disjoint questions, drawn from ``seed``."""
    rng = random.Random(seed)
    n = cfg["num_examples"]
    if cfg["dataset"] == "arith":
        examples = arith_examples(n, cfg["digits"], rng)
    elif cfg["dataset"] == "multihop":
        examples = multihop_examples(n, cfg["entities"], cfg["facts"], rng)
    else:
        raise ValueError(f"dataset must be 'arith' or 'multihop', got {cfg['dataset']!r}")
    n_test = int(n * cfg["test_fraction"])
    n_val = int(n * cfg["val_fraction"])
    parts = (examples[n_test + n_val :], examples[n_test : n_test + n_val], examples[:n_test])
    train, val, test = (Split(encode([q for q, _ in p]), encode([a for _, a in p])) for p in parts)
    return train, val, test
