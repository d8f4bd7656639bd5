"""The accelerator catalog: a built-in $/GPU-hour table that a study's `prices:` overrides,
and each GPU's memory, for refusing runs that cannot fit on the GPU they ask for."""

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

# Memory of one GPU, in GB.
GPU_MEMORY_GB = {
    "A100": 40,
    "A100-40GB": 40,
    "A100-80GB": 80,
    "H100": 80,
    "H200": 141,
    "L4": 24,
    "A10G": 24,
    "T4": 16,
}


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


def gpu_memory_gb(accelerator: str | None) -> float | None:
    """The memory of one ``accelerator`` GPU in GB, None when the catalog does not know it."""
    if not accelerator:
        return None
    return GPU_MEMORY_GB.get(accelerator.upper())
