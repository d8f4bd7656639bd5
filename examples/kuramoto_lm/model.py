"""A nanoGPT-style character transformer with an optional Kuramoto phase-coupled layer.

Kuramoto phase-coupled attention (``KuramotoAttention``)
--------------------------------------------------------
Every token i carries ``M = oscillators`` phase oscillators per head. Their initial
phases and natural frequencies are read from the token's hidden state:

    theta_i(0) = pi * tanh(W_theta x_i),      omega_i = W_omega x_i

The ordinary causal attention weights a_ij = softmax_j(q_i . k_j / sqrt(d)) define the
coupling graph, and the phases follow a few explicit Euler steps of

    dtheta_i/dt = omega_i + K * sum_j a_ij sin(theta_j - theta_i)

Because each row of a_ij sums to 1, ``sum_j a_ij sin(.)`` already is the 1/N-normalised
mean field of the classic model (a_ij = 1/N for uniform attention), so K = ``coupling``
plays the role of K in dtheta_i/dt = omega_i + (K/N) sum_j sin(theta_j - theta_i). The
sum is computed in O(T^2 M) with the identity
sin(theta_j - theta_i) = sin theta_j cos theta_i - cos theta_j sin theta_i.

The synchronised phases then modulate the attention output: the phase coherence
c_ij = mean_m cos(theta_jm - theta_im) (1 for phase-locked tokens, ~0 for unrelated
ones) is added to the attention logits with a learned per-head gain beta, so tokens
whose oscillators locked together attend to each other more:

    y_i = sum_j softmax_j(q_i . k_j / sqrt(d) + beta * c_ij) v_j

The layer records the Kuramoto order parameter R = |mean_j exp(i theta_j)| (over the
tokens of a sequence, averaged over batch, heads and oscillators) of its last forward.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class GPTConfig:
    vocab_size: int
    block_size: int = 128
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0
    phase_layer: int | None = None  # index of the block whose attention is Kuramoto-coupled
    oscillators: int = 8
    coupling: float = 1.0
    kuramoto_steps: int = 4
    dt: float = 0.25


def order_parameter(theta: torch.Tensor, dim: int = -2) -> torch.Tensor:
    """Kuramoto order parameter R = |mean_j exp(i theta_j)| over ``dim``, averaged over the rest.

    1 when all phases along ``dim`` are equal, near 0 when they are spread out.
    """
    theta = theta.float()
    r = torch.sqrt(torch.cos(theta).mean(dim) ** 2 + torch.sin(theta).mean(dim) ** 2)
    return r.mean().clamp(0.0, 1.0)


def causal_mask(t: int, device: torch.device) -> torch.Tensor:
    return torch.ones(t, t, dtype=torch.bool, device=device).tril()


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        assert cfg.n_embd % cfg.n_head == 0, "n_embd must be divisible by n_head"
        self.n_head = cfg.n_head
        self.c_attn = nn.Linear(cfg.n_embd, 3 * cfg.n_embd)
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd)
        self.dropout = cfg.dropout

    def _qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b, t, c = x.shape
        q, k, v = self.c_attn(x).split(c, dim=2)
        shape = (b, t, self.n_head, c // self.n_head)
        return (z.view(shape).transpose(1, 2) for z in (q, k, v))  # (B, H, T, hd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self._qkv(x)
        y = F.scaled_dot_product_attention(
            q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0
        )
        return self.c_proj(y.transpose(1, 2).reshape(b, t, c))


class KuramotoAttention(CausalSelfAttention):
    """Causal attention whose weights are re-shaped by synchronised Kuramoto phases."""

    def __init__(self, cfg: GPTConfig):
        super().__init__(cfg)
        hm = cfg.n_head * cfg.oscillators
        self.oscillators = cfg.oscillators
        self.coupling = cfg.coupling
        self.steps = cfg.kuramoto_steps
        self.dt = cfg.dt
        self.phase = nn.Linear(cfg.n_embd, hm)  # initial phases
        self.freq = nn.Linear(cfg.n_embd, hm)  # natural frequencies omega_i
        self.beta = nn.Parameter(torch.ones(cfg.n_head, 1, 1))  # coherence gain per head
        self.reset_phase_parameters()
        self.last_order: torch.Tensor | None = None
        self.last_theta: torch.Tensor | None = None

    def reset_phase_parameters(self) -> None:
        """Spread initial phases over the circle (std ~1 rad before tanh) and keep natural
        frequencies moderate (std ~0.5), so R starts well below 1 and coupling matters."""
        fan_in = self.phase.in_features
        nn.init.normal_(self.phase.weight, std=1.0 / math.sqrt(fan_in))
        nn.init.zeros_(self.phase.bias)
        nn.init.normal_(self.freq.weight, std=0.5 / math.sqrt(fan_in))
        nn.init.zeros_(self.freq.bias)

    def evolve(self, theta: torch.Tensor, omega: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """Euler steps of dtheta_i/dt = omega_i + K sum_j a_ij sin(theta_j - theta_i).

        theta, omega: (B, H, T, M); a: (B, H, T, T) with rows summing to 1.
        """
        for _ in range(self.steps):
            sin, cos = torch.sin(theta), torch.cos(theta)
            field = cos * (a @ sin) - sin * (a @ cos)  # sum_j a_ij sin(theta_j - theta_i)
            theta = theta + self.dt * (omega + self.coupling * field)
        return theta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        h, m = self.n_head, self.oscillators
        q, k, v = self._qkv(x)
        mask = causal_mask(t, x.device)
        logits = (q @ k.transpose(-2, -1)) / math.sqrt(q.size(-1))
        logits = logits.masked_fill(~mask, float("-inf"))
        with torch.autocast(device_type=x.device.type, enabled=False):  # phases in fp32
            a = torch.softmax(logits.float(), dim=-1)
            theta0 = math.pi * torch.tanh(self.phase(x.float()))
            omega = self.freq(x.float())
            theta0 = theta0.view(b, t, h, m).transpose(1, 2)  # (B, H, T, M)
            omega = omega.view(b, t, h, m).transpose(1, 2)
            theta = self.evolve(theta0, omega, a)
            sin, cos = torch.sin(theta), torch.cos(theta)
            coherence = (cos @ cos.transpose(-2, -1) + sin @ sin.transpose(-2, -1)) / m
            logits = logits.float() + self.beta * coherence
            att = torch.softmax(logits.masked_fill(~mask, float("-inf")), dim=-1)
        self.last_theta = theta.detach()
        self.last_order = order_parameter(theta.detach(), dim=-2)
        att = F.dropout(att, p=self.dropout, training=self.training)
        y = att.to(v.dtype) @ v
        return self.c_proj(y.transpose(1, 2).reshape(b, t, c))


class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(cfg.n_embd, 4 * cfg.n_embd)
        self.c_proj = nn.Linear(4 * cfg.n_embd, cfg.n_embd)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x))))


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig, phase: bool = False):
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.n_embd)
        self.attn = KuramotoAttention(cfg) if phase else CausalSelfAttention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.n_embd)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        if cfg.phase_layer is not None and not 0 <= cfg.phase_layer < cfg.n_layer:
            raise ValueError(f"phase_layer={cfg.phase_layer} is not a block index in 0..{cfg.n_layer - 1}")
        self.cfg = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.wpe = nn.Embedding(cfg.block_size, cfg.n_embd)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg, phase=(i == cfg.phase_layer)) for i in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.n_embd)
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # weight tying
        self.apply(self._init_weights)
        for name, p in self.named_parameters():  # GPT-2 scaled init of residual projections
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))
        for module in self.modules():
            if isinstance(module, KuramotoAttention):
                module.reset_phase_parameters()

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def phase_attention(self) -> KuramotoAttention | None:
        if self.cfg.phase_layer is None:
            return None
        attn = self.blocks[self.cfg.phase_layer].attn
        assert isinstance(attn, KuramotoAttention)
        return attn

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        b, t = idx.shape
        if t > self.cfg.block_size:
            raise ValueError(f"sequence length {t} exceeds block_size {self.cfg.block_size}")
        pos = torch.arange(t, device=idx.device)
        x = self.drop(self.wte(idx) + self.wpe(pos))
        for block in self.blocks:
            x = block(x)
        logits = self.lm_head(self.ln_f(x))
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.view(-1))
        return logits, loss
