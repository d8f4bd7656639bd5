"""The networks of the latent bridge: two decoder LMs and the translator between them.

Source ("Mistral" stand-in) and target ("Llama" stand-in) are both ``DecoderLM``: small
causal transformers with their own embeddings, widths, heads and positions, each trained
as a text LM on question -> answer. The source's final hidden states over the question
tokens are what the bridge reads; the target consumes a prompt of input embeddings
(the text question, or K soft tokens), decodes greedily with a K/V cache, and the
cache's size in bytes is measured.

Translator: K learned queries cross-attend (``depth`` layers, ``heads`` heads, width
``bottleneck``) to the source's hidden states and are projected to the target's
embedding width: K soft tokens.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

KVCache = list[tuple[torch.Tensor, torch.Tensor]]


def _init(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)


class Attention(nn.Module):
    """Multi-head attention: self-attention when ``memory`` is None, else cross-attention."""

    def __init__(self, dim: int, heads: int, kv_dim: int | None = None):
        super().__init__()
        assert dim % heads == 0, "width must be divisible by heads"
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(kv_dim or dim, 2 * dim)
        self.out = nn.Linear(dim, dim)

    def split(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        return x.view(b, t, self.heads, c // self.heads).transpose(1, 2)

    def forward(
        self,
        x: torch.Tensor,
        memory: torch.Tensor | None = None,
        causal: bool = False,
        cache: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        b, t, c = x.shape
        q = self.split(self.q(x))
        k, v = (self.split(z) for z in self.kv(x if memory is None else memory).chunk(2, dim=-1))
        if cache is not None:  # decoding: prepend the cached keys/values
            k, v = torch.cat([cache[0], k], dim=2), torch.cat([cache[1], v], dim=2)
        # With a cache, the new queries sit at the end, so a causal mask is only needed
        # when more than one query is processed at once (prefill or training).
        mask = None
        if causal and t > 1:
            s = k.size(2)
            mask = torch.ones(t, s, dtype=torch.bool, device=x.device).tril(diagonal=s - t)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.out(y.transpose(1, 2).reshape(b, t, c)), (k, v)


class MLP(nn.Sequential):
    def __init__(self, dim: int):
        super().__init__(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, causal: bool):
        super().__init__()
        self.causal = causal
        self.ln_1, self.attn = nn.LayerNorm(dim), Attention(dim, heads)
        self.ln_2, self.mlp = nn.LayerNorm(dim), MLP(dim)

    def forward(self, x: torch.Tensor, cache=None):
        y, kv = self.attn(self.ln_1(x), causal=self.causal, cache=cache)
        x = x + y
        return x + self.mlp(self.ln_2(x)), kv


class DecoderLM(nn.Module):
    """Causal LM that takes input embeddings, so a prompt may be text or soft tokens."""

    def __init__(self, vocab: int, max_len: int, dim: int, layers: int, heads: int):
        super().__init__()
        self.tok = nn.Embedding(vocab, dim)
        self.pos = nn.Embedding(max_len, dim)
        self.blocks = nn.ModuleList(Block(dim, heads, causal=True) for _ in range(layers))
        self.ln_f = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab, bias=False)
        _init(self)

    def forward(self, emb: torch.Tensor, start: int = 0, cache: KVCache | None = None):
        """(final hidden states, logits, new cache) for embeddings at positions start.."""
        pos = torch.arange(start, start + emb.size(1), device=emb.device)
        x = emb + self.pos(pos)
        new_cache = []
        for i, block in enumerate(self.blocks):
            x, kv = block(x, cache=None if cache is None else cache[i])
            new_cache.append(kv)
        h = self.ln_f(x)
        return h, self.head(h), new_cache

    def answer_loss(self, prompt: torch.Tensor, answers: torch.Tensor) -> torch.Tensor:
        """Teacher-forced cross-entropy of ``answers`` after a prompt of embeddings."""
        p = prompt.size(1)
        emb = torch.cat([prompt, self.tok(answers[:, :-1])], dim=1)
        _, logits, _ = self(emb)
        logits = logits[:, p - 1 :].float()
        return F.cross_entropy(logits.reshape(-1, logits.size(-1)), answers.reshape(-1))

    @torch.no_grad()
    def generate(self, prompt: torch.Tensor, answer_len: int, start: int = 0) -> tuple[torch.Tensor, KVCache]:
        """Greedy decoding with a K/V cache, the prompt at positions ``start``..; returns
        (tokens (B, answer_len), prefill cache)."""
        _, logits, cache = self(prompt, start=start)
        prefill_cache = cache
        out = [logits[:, -1].argmax(-1)]
        pos = start + prompt.size(1)
        for _ in range(answer_len - 1):
            _, logits, cache = self(self.tok(out[-1])[:, None], start=pos, cache=cache)
            out.append(logits[:, -1].argmax(-1))
            pos += 1
        return torch.stack(out, dim=1), prefill_cache


def cache_bytes(cache: KVCache) -> int:
    """Bytes held by a K/V cache for one sequence (the batch dimension divided out)."""
    total = sum(k.numel() * k.element_size() + v.numel() * v.element_size() for k, v in cache)
    return total // cache[0][0].size(0)


class Translator(nn.Module):
    """Source hidden states -> K soft tokens in the target's embedding space."""

    def __init__(
        self, source_dim: int, target_dim: int, soft_tokens: int, depth: int, bottleneck: int, heads: int
    ):
        super().__init__()
        self.inp = nn.Sequential(nn.LayerNorm(source_dim), nn.Linear(source_dim, bottleneck))
        self.queries = nn.Parameter(torch.randn(soft_tokens, bottleneck) * 0.02)
        self.layers = nn.ModuleList(
            nn.ModuleDict(
                {
                    "ln_q": nn.LayerNorm(bottleneck),
                    "cross": Attention(bottleneck, heads),
                    "ln_m": nn.LayerNorm(bottleneck),
                    "mlp": MLP(bottleneck),
                }
            )
            for _ in range(depth)
        )
        self.ln_out = nn.LayerNorm(bottleneck)
        self.out = nn.Linear(bottleneck, target_dim)
        # Projection head for the InfoNCE alignment loss (unused when infonce is off).
        self.align = nn.Linear(target_dim, target_dim)
        _init(self)
        nn.init.normal_(self.queries, std=1.0)

    def forward(self, source_hidden: torch.Tensor) -> torch.Tensor:
        memory = self.inp(source_hidden)
        q = self.queries.expand(source_hidden.size(0), -1, -1)
        for layer in self.layers:
            y, _ = layer["cross"](layer["ln_q"](q), memory=memory)
            q = q + y
            q = q + layer["mlp"](layer["ln_m"](q))
        return self.out(self.ln_out(q))


def infonce(soft: torch.Tensor, anchor: torch.Tensor, head: nn.Module, temperature: float) -> torch.Tensor:
    """Symmetric InfoNCE between pooled soft tokens and target-side question embeddings."""
    z_s = F.normalize(head(soft.mean(dim=1)).float(), dim=-1)
    z_t = F.normalize(anchor.float(), dim=-1)
    logits = z_s @ z_t.t() / temperature
    labels = torch.arange(len(z_s), device=soft.device)
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels))


def warmup_lr(step: int, lr: float, warmup: int) -> float:
    """Linear warmup to ``lr`` over ``warmup`` steps, then constant."""
    return lr * min(1.0, (step + 1) / max(1, warmup))


def exact_match(pred: torch.Tensor, gold: torch.Tensor) -> float:
    return (pred == gold).all(dim=1).float().mean().item()

