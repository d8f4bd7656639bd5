"""A latent-token neural operator for 1D fields (UPT-style: encode, approximate, decode).

    grid field u[B, n_x] --encoder--> latent tokens z[B, T, D] --approximator--> z'
                          --decoder--> field at any query points x in [0, 1)

* Encoder: every grid point becomes a feature vector from (u, positional features of x);
  ``tokens`` learned queries cross-attend to those points (one cross-attention block),
  so the latent size T is independent of the grid size. Token i is anchored at
  x = (i + 1/2) / T and the cross-attention carries a learnt Gaussian locality prior in
  the periodic distance between anchor and point (multi-scale over heads, initial widths
  2^h / T): a soft version of UPT's supernode pooling, which makes the tokens spatial
  from the first step (without it a perceiver-style encoder starts from a uniform average
  and learns this small problem very slowly).
* Approximator, ``architecture``:
    - ``pure``: ``depth`` pre-norm transformer blocks on the T tokens.
    - ``u_shaped``: a U-Net over tokens. Blocks on the way down are each followed by a
      2:1 token merge (concatenate neighbouring tokens, i.e. neighbouring anchors,
      linear 2D -> D); blocks on the way up are each preceded by a 1:2 split (linear
      D -> 2D, reshape) plus a skip connection from the same level on the way down.
      ``depth`` blocks in all: depth // 2 levels (fewer if T runs out of tokens to
      halve), any odd block sits at the bottleneck.
* Attention in the approximator, ``attention``:
    - ``standard``: multi-head self-attention over tokens; q, k, v and the output
      projection are dense D x D maps, so every head sees every channel.
    - ``channel_separated``: the D channels are split into ``heads`` groups of D / heads
      channels. Each group has its own q, k, v and output projections acting only on its
      own channels (block-diagonal weights) and attends over tokens with its own attention
      map; groups never exchange information inside the attention sub-layer (the MLP of
      the block mixes channels). It has 1 / heads the attention parameters of ``standard``.
* Decoder: query points (positional features of x through an MLP) cross-attend to the
  latent tokens (with the same kind of locality prior towards the token anchors), then
  an MLP reads out one value (``head: deterministic``) or a mean and a log-variance
  (``head: gaussian``).

The positional features of x are [x, sin(2 pi k x), cos(2 pi k x), k = 1..K]. The raw
coordinate x makes the learnt field *not* periodic by construction, so the periodicity
of the prediction at the wrap-around x = 0 ~ x = 1 is something the model must learn and
that the trainer measures (``bc_violation``).

The operator predicts the normalised increment: ``forward`` returns
``u + delta_scale * net((u - u_shift) / u_scale)`` when ``residual`` is set (else
``u_shift + delta_scale * net(...)``), where the shift and scales are buffers the trainer
sets from the training data.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

N_FREQ = 8  # Fourier frequencies in the positional features


def positional_features(x: torch.Tensor) -> torch.Tensor:
    """[..., Q] coordinates in [0, 1) -> [..., Q, 1 + 2 * N_FREQ] features."""
    k = torch.arange(1, N_FREQ + 1, device=x.device, dtype=x.dtype)
    angle = 2.0 * math.pi * x[..., None] * k
    return torch.cat([x[..., None], torch.sin(angle), torch.cos(angle)], dim=-1)


class MLP(nn.Module):
    def __init__(self, dim: int, hidden: int, out: int | None = None) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, out or dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class SelfAttention(nn.Module):
    """Standard multi-head self-attention over tokens."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v)  # [B, H, T, D/H]
        return self.proj(y.transpose(1, 2).reshape(b, t, d))


class GroupedLinear(nn.Module):
    """G independent linear maps, one per channel group: [..., G, d_in] -> [..., G, d_out]."""

    def __init__(self, groups: int, d_in: int, d_out: int) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(d_in)
        self.weight = nn.Parameter(torch.empty(groups, d_in, d_out).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(groups, d_out).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("...gi,gio->...go", x, self.weight) + self.bias


class ChannelSeparatedAttention(nn.Module):
    """Self-attention over tokens computed separately within each channel group.

    Channels are split into ``groups`` contiguous groups of D / groups; group g has its
    own q/k/v/output projections (D/G -> D/G, block-diagonal overall) and its own
    attention map, so no information crosses groups inside this layer.
    """

    def __init__(self, dim: int, groups: int) -> None:
        super().__init__()
        self.groups = groups
        self.qkv = GroupedLinear(groups, dim // groups, 3 * (dim // groups))
        self.proj = GroupedLinear(groups, dim // groups, dim // groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        g = self.groups
        qkv = self.qkv(x.view(b, t, g, d // g))  # [B, T, G, 3 d/G]
        q, k, v = qkv.view(b, t, g, 3, d // g).permute(3, 0, 2, 1, 4)  # [B, G, T, d/G] each
        y = F.scaled_dot_product_attention(q, k, v).transpose(1, 2)  # [B, T, G, d/G]
        return self.proj(y).reshape(b, t, d)


class Block(nn.Module):
    """Pre-norm transformer block over tokens."""

    def __init__(self, dim: int, heads: int, attention: str) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        if attention == "standard":
            self.attn: nn.Module = SelfAttention(dim, heads)
        elif attention == "channel_separated":
            self.attn = ChannelSeparatedAttention(dim, heads)
        else:
            raise ValueError(f"attention must be standard or channel_separated, got {attention!r}")
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLP(dim, 4 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class CrossAttention(nn.Module):
    """Multi-head cross-attention from queries [B, Q, D] to context [B, K, D] with a
    locality prior: head h adds -d(q, k)^2 / (2 sigma_h^2) to its attention logits, where
    d is the periodic distance between the query's and the key's coordinates in [0, 1)
    and sigma_h is learnt (initialised multi-scale: ``width * 2^h``)."""

    def __init__(self, dim: int, heads: int, width: float) -> None:
        super().__init__()
        self.heads = heads
        self.norm_q = nn.LayerNorm(dim)
        self.norm_kv = nn.LayerNorm(dim)
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        scales = width * 2.0 ** torch.arange(heads, dtype=torch.float32)
        self.log_sigma = nn.Parameter(scales.log())

    def forward(
        self, query: torch.Tensor, context: torch.Tensor, xq: torch.Tensor, xk: torch.Tensor
    ) -> torch.Tensor:
        """xq [Q] or [B, Q] and xk [K]: the coordinates of queries and keys."""
        b, nq, d = query.shape
        nk = context.shape[1]
        h = self.heads
        q = self.q(self.norm_q(query)).view(b, nq, h, d // h).transpose(1, 2)
        k, v = self.kv(self.norm_kv(context)).view(b, nk, 2, h, d // h).permute(2, 0, 3, 1, 4)
        dist = torch.remainder(xq[..., :, None] - xk[None, :], 1.0)
        dist = torch.minimum(dist, 1.0 - dist)  # periodic distance, [Q, K] or [B, Q, K]
        inv_var = torch.exp(-2.0 * self.log_sigma).to(dist.dtype)
        bias = -0.5 * dist.unsqueeze(-3) ** 2 * inv_var[:, None, None]  # [(B,) H, Q, K]
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype))
        return self.proj(y.transpose(1, 2).reshape(b, nq, d))


class PureApproximator(nn.Module):
    def __init__(self, dim: int, depth: int, heads: int, attention: str, tokens: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(Block(dim, heads, attention) for _ in range(depth))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            z = block(z)
        return z


class UShapedApproximator(nn.Module):
    """U-Net over tokens: blocks + 2:1 token merges down, 1:2 splits + skips + blocks up."""

    def __init__(self, dim: int, depth: int, heads: int, attention: str, tokens: int) -> None:
        super().__init__()
        levels = depth // 2
        while levels > 0 and (tokens % (2**levels) or tokens // (2**levels) < 2):
            levels -= 1
        self.levels = levels
        self.down = nn.ModuleList(Block(dim, heads, attention) for _ in range(levels))
        self.merge = nn.ModuleList(nn.Linear(2 * dim, dim) for _ in range(levels))
        self.middle = nn.ModuleList(Block(dim, heads, attention) for _ in range(depth - 2 * levels))
        self.split = nn.ModuleList(nn.Linear(dim, 2 * dim) for _ in range(levels))
        self.up = nn.ModuleList(Block(dim, heads, attention) for _ in range(levels))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        skips = []
        for block, merge in zip(self.down, self.merge):
            z = block(z)
            skips.append(z)
            b, t, d = z.shape
            z = merge(z.reshape(b, t // 2, 2 * d))
        for block in self.middle:
            z = block(z)
        for block, split, skip in zip(self.up, self.split, reversed(skips)):
            b, t, d = z.shape
            z = split(z).reshape(b, 2 * t, d) + skip
            z = block(z)
        return z


class LatentOperator(nn.Module):
    def __init__(
        self,
        architecture: str = "u_shaped",
        tokens: int = 32,
        attention: str = "standard",
        hidden: int = 64,
        depth: int = 4,
        heads: int = 4,
        head: str = "deterministic",
        residual: bool = True,
    ) -> None:
        super().__init__()
        if hidden % heads:
            raise ValueError(f"hidden ({hidden}) must be divisible by heads ({heads})")
        if head not in ("deterministic", "gaussian"):
            raise ValueError(f"head must be deterministic or gaussian, got {head!r}")
        approximators = {"pure": PureApproximator, "u_shaped": UShapedApproximator}
        if architecture not in approximators:
            raise ValueError(f"architecture must be pure or u_shaped, got {architecture!r}")
        self.head = head
        self.residual = residual
        n_pos = 1 + 2 * N_FREQ
        # token i is anchored at x = (i + 1/2) / T: its locality prior in the encoder and
        # decoder attention, and the order the U-shaped approximator merges tokens in
        self.register_buffer("anchors", (torch.arange(tokens) + 0.5) / tokens, persistent=False)
        # encoder
        self.point_embed = MLP(1 + n_pos, hidden, hidden)
        self.queries = nn.Parameter(torch.randn(tokens, hidden) * 0.02)
        self.enc_attn = CrossAttention(hidden, heads, width=1.0 / tokens)
        self.enc_mlp = MLP(hidden, 2 * hidden)
        self.enc_norm = nn.LayerNorm(hidden)
        # approximator
        self.approximator = approximators[architecture](hidden, depth, heads, attention, tokens)
        self.latent_norm = nn.LayerNorm(hidden)
        # decoder
        self.query_embed = MLP(n_pos, hidden, hidden)
        self.dec_attn = CrossAttention(hidden, heads, width=1.0 / tokens)
        self.dec_norm = nn.LayerNorm(hidden)
        self.readout = MLP(hidden, hidden, 2 if head == "gaussian" else 1)
        nn.init.zeros_(self.readout.fc2.weight)  # start as the identity map (zero increment)
        nn.init.zeros_(self.readout.fc2.bias)
        # normalisation, set by the trainer from training data
        self.register_buffer("u_shift", torch.zeros(()))
        self.register_buffer("u_scale", torch.ones(()))
        self.register_buffer("delta_scale", torch.ones(()))

    def encode(self, u: torch.Tensor) -> torch.Tensor:
        """Field on the grid x_j = j / n_x, [B, n_x] -> latent tokens [B, T, D]."""
        b, n = u.shape
        x = torch.arange(n, device=u.device, dtype=u.dtype) / n
        pos = positional_features(x).expand(b, n, -1)
        u_in = ((u - self.u_shift) / self.u_scale)[..., None]
        points = self.point_embed(torch.cat([u_in, pos], dim=-1))  # [B, n, D]
        z = self.queries.expand(b, -1, -1)
        z = z + self.enc_attn(z, points, self.anchors, x)
        z = z + self.enc_mlp(self.enc_norm(z))
        return self.latent_norm(self.approximator(z))

    def decode(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Latents [B, T, D], query coordinates x [Q] -> raw outputs [B, Q, 1|2]."""
        q = self.query_embed(positional_features(x.to(z.dtype))).expand(z.shape[0], -1, -1)
        q = q + self.dec_attn(q, z, x, self.anchors)
        return self.readout(self.dec_norm(q))

    def forward_dist(
        self, u: torch.Tensor, x: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """u[B, n_x] -> (mean[B, Q], normalised log-variance[B, Q] or None).

        ``x`` [Q] are query coordinates in [0, 1) (default: the input grid, i / n_x). The
        log-variance is of the normalised increment (delta / delta_scale). With
        ``residual`` the mean is u + increment, which needs x on the input grid.
        """
        z = self.encode(u)
        grid = x is None
        if grid:
            x = torch.arange(u.shape[1], device=u.device, dtype=u.dtype) / u.shape[1]
        out = self.decode(z, x).float()
        mean = out[..., 0] * self.delta_scale
        if self.residual:
            if not grid:
                raise ValueError("a residual model predicts increments on its input grid only")
            mean = u.float() + mean
        else:
            mean = self.u_shift + mean
        # clamped for stability early in training; normalised units, so this is ample
        logvar = out[..., 1].clamp(-12.0, 6.0) if self.head == "gaussian" else None
        return mean, logvar

    def increment(self, u: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The decoded field at arbitrary query coordinates x in physical units: the
        increment for a residual model, the predicted field otherwise."""
        inc = self.decode(self.encode(u), x).float()[..., 0] * self.delta_scale
        return inc if self.residual else self.u_shift + inc

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self.forward_dist(u)[0]


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
