"""Offline character-level corpus: a fixed list of Python standard-library sources.

The text ships with every Python install, so no download is needed, and it is
identical on machines with the same Python version. Each file is split 90/10 into
train/validation (so validation covers every file's style, not only the last one).
"""

from __future__ import annotations

import sysconfig
from pathlib import Path

import torch

# Pure-Python stdlib modules present in CPython 3.8 through 3.13; order is fixed.
STDLIB_FILES = (
    "textwrap.py",
    "string.py",
    "bisect.py",
    "heapq.py",
    "fnmatch.py",
    "glob.py",
    "shlex.py",
    "queue.py",
    "colorsys.py",
    "calendar.py",
    "difflib.py",
    "fractions.py",
    "statistics.py",
    "random.py",
    "functools.py",
    "copy.py",
    "pprint.py",
    "enum.py",
    "dataclasses.py",
    "argparse.py",
)

# Vocabulary: newline, printable ASCII (space .. '~'), and one "other" symbol.
# Fixed rather than read from the text so ids never depend on which files were found.
_CHARS = "\n" + "".join(chr(c) for c in range(32, 127))
_STOI = {ch: i for i, ch in enumerate(_CHARS)}
VOCAB_SIZE = len(_CHARS) + 1
UNK = len(_CHARS)


def encode(text: str) -> torch.Tensor:
    text = text.replace("\t", "    ")
    return torch.tensor([_STOI.get(ch, UNK) for ch in text], dtype=torch.long)


def decode(ids: torch.Tensor | list[int]) -> str:
    return "".join(_CHARS[i] if i < len(_CHARS) else "?" for i in list(ids))


def _stdlib_texts() -> list[str]:
    root = Path(sysconfig.get_paths()["stdlib"])
    texts = []
    for name in STDLIB_FILES:
        path = root / name
        if path.is_file():
            texts.append(path.read_text(encoding="utf-8", errors="replace"))
    if sum(map(len, texts)) < 100_000:  # a stripped install (only .pyc): use docstrings
        import builtins
        import codecs
        import this  # noqa: F401  (prints the Zen once; its text is rot13 in this.s)

        texts = [codecs.decode(this.s, "rot13")]
        for name in sorted(dir(builtins)):
            doc = getattr(getattr(builtins, name), "__doc__", None)
            if isinstance(doc, str):
                texts.append(doc)
    return texts


def load_corpus(max_chars: int | None = None, val_fraction: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """(train_ids, val_ids): every file split at ``1 - val_fraction`` of its length.

    ``max_chars`` caps the total corpus (taken proportionally from each file).
    """
    texts = _stdlib_texts()
    total = sum(map(len, texts))
    keep = 1.0 if not max_chars or max_chars >= total else max_chars / total
    train_parts, val_parts = [], []
    for text in texts:
        text = text[: max(1, int(len(text) * keep))]
        cut = int(len(text) * (1.0 - val_fraction))
        train_parts.append(text[:cut])
        val_parts.append(text[cut:])
    return encode("".join(train_parts)), encode("".join(val_parts))


def get_batch(
    data: torch.Tensor, block_size: int, batch_size: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random windows (x, y) with y shifted by one, drawn with ``generator``."""
    ix = torch.randint(len(data) - block_size - 1, (batch_size,), generator=generator)
    x = torch.stack([data[i : i + block_size] for i in ix.tolist()])
    y = torch.stack([data[i + 1 : i + 1 + block_size] for i in ix.tolist()])
    return x, y
