"""A learnable synthetic sequence task generated from the seed: copy after a separator.

Each sequence is ``n`` random symbols, a separator, then the same ``n`` symbols again.
The model reads the sequence left to right and is scored only on the copied half, where
every token is predictable (loss can fall from ln(vocab) towards 0; the first half is
random and carries no loss). Learning it needs an induction-style attention pattern.
"""

from __future__ import annotations

import torch


def make_copy_data(num: int, n: int, vocab: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y) for ``num`` sequences; x, y: (num, 2n) long, y = -100 where unscored.

    Token ids: symbols 0..vocab-1, separator ``vocab`` (so the model vocabulary is vocab+1).
    """
    symbols = torch.randint(vocab, (num, n), generator=generator)
    sep = torch.full((num, 1), vocab, dtype=torch.long)
    seq = torch.cat([symbols, sep, symbols], dim=1)  # (num, 2n + 1)
    x, y = seq[:, :-1].clone(), seq[:, 1:].clone()
    y[:, :n] = -100  # positions 0..n-1 predict the random prefix and the separator
    return x, y
