"""Dollar estimates: a built-in $/GPU-hour table that a study's `prices:` overrides."""

from __future__ import annotations

# Typical on-demand $/hour for one GPU (2026). Studies on marketplaces such as Vast.ai
# should state their own figures under `prices:`.
GPU_PRICES = {
    "A100": 1.90,  # 40 GB
    "A100-40GB": 1.90,
    "A100-80GB": 2.40,
    "H100": 3.00,
    "H200": 3.80,
    "L4": 0.80,
    "A10G": 1.20,
    "T4": 0.55,
}
CPU_PRICE = 0.04  # $/hour per CPU core, for runs with no accelerator
CPU_KEY = "CPU"


def price_table(overrides: dict[str, float]) -> dict[str, float]:
    table = {k.upper(): v for k, v in GPU_PRICES.items()}
    table[CPU_KEY] = CPU_PRICE
    table.update({k.upper(): v for k, v in overrides.items()})
    return table


class UnknownPrice(KeyError):
    pass


def hourly_usd(accelerator: str | None, gpus: int, cpus: int, table: dict[str, float]) -> float:
    """What one run costs per hour on its resources."""
    if not accelerator:
        return table[CPU_KEY] * cpus
    key = accelerator.upper()
    if key not in table:
        raise UnknownPrice(accelerator)
    return table[key] * gpus
