"""The accelerator catalog: $/GPU-hour from SkyPilot's catalog of the study's cloud when one
is cached on this machine (else a built-in table), which a study's `prices:` overrides; and
each GPU's memory, for refusing runs that cannot fit on the GPU they ask for.

SkyPilot's catalogs are CSV files it downloads on first use into ``~/.sky/catalogs/<schema
version>/<cloud>/vms.csv``; studyc only reads what is there (never downloads, nothing
imported), so planning stays offline and fast.
"""

from __future__ import annotations

import csv
import os
from functools import lru_cache
from dataclasses import dataclass, field
from pathlib import Path

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


# SkyPilot 0.14's catalog layout (sky/catalog/common.py, CATALOG_SCHEMA_VERSION).
CATALOG_SCHEMA = "v8"
# The jobs controller: SkyPilot's default size (sky/jobs/constants.py CONTROLLER_RESOURCES:
# 4+ CPUs, memory 4x the CPUs) and its autostop (10 idle minutes); its price where no
# catalog is cached (AWS m6i.xlarge on demand, us-east-1).
CONTROLLER_CPUS = 4
CONTROLLER_MEMORY_PER_CPU_GB = 4
CONTROLLER_IDLE_H = 10 / 60
CONTROLLER_PRICE = 0.192


@dataclass
class Catalog:
    """One cloud's offers as SkyPilot's cached catalog lists them: the cheapest $/GPU-hour
    per accelerator (on demand and spot) and the cheapest $/CPU-hour without one."""

    cloud: str
    path: Path
    gpu: dict[str, float] = field(default_factory=dict)
    gpu_spot: dict[str, float] = field(default_factory=dict)
    cpu: float | None = None
    cpu_spot: float | None = None
    controller: float | None = None  # cheapest VM of the jobs controller's size


def catalog_dir() -> Path:
    return Path(os.path.expanduser("~")) / ".sky" / "catalogs" / CATALOG_SCHEMA


def infra_cloud(infra: str | None) -> str | None:
    """The cloud of a SkyPilot infra string (``aws/us-east-1`` -> aws; ``k8s`` -> kubernetes)."""
    if not infra:
        return None
    name = infra.split("/", 1)[0].strip().lower()
    return {"k8s": "kubernetes", "*": None}.get(name, name)


def read_catalog(cloud: str | None) -> Catalog | None:
    """``cloud``'s cached SkyPilot catalog, None when none is cached (or it cannot be read)."""
    if not cloud:
        return None
    path = catalog_dir() / cloud / "vms.csv"
    try:
        stat = path.stat()
    except OSError:
        return None
    return _parse_catalog(cloud, path, stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=16)
def _parse_catalog(cloud: str, path: Path, mtime_ns: int, size: int) -> Catalog | None:
    """A catalog file read once per version of it (a command prices, checks and dry-runs
    against the same one)."""
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error):
        return None
    out = Catalog(cloud, path)
    for row in rows:
        price, spot = _number(row.get("Price")), _number(row.get("SpotPrice"))
        cpus, memory = _number(row.get("vCPUs")), _number(row.get("MemoryGiB"))
        name, count = (row.get("AcceleratorName") or "").strip(), _number(row.get("AcceleratorCount"))
        if name and count:
            key = name.upper()
            _keep_min(out.gpu, key, price / count if price else None)
            _keep_min(out.gpu_spot, key, spot / count if spot else None)
        elif cpus:
            if price:
                out.cpu = min(out.cpu or price / cpus, price / cpus)
                if memory and cpus >= CONTROLLER_CPUS and memory >= CONTROLLER_MEMORY_PER_CPU_GB * CONTROLLER_CPUS:
                    out.controller = min(out.controller or price, price)
            if spot:
                out.cpu_spot = min(out.cpu_spot or spot / cpus, spot / cpus)
    return out


def _keep_min(table: dict[str, float], key: str, value: float | None) -> None:
    if value is not None and (key not in table or value < table[key]):
        table[key] = value


def _number(text: str | None) -> float | None:
    try:
        value = float(text) if text not in (None, "") else None
    except ValueError:
        return None
    return value if value is not None and value == value and value >= 0 else None


def price_table(overrides: dict[str, float], catalog: Catalog | None = None, spot: bool = False) -> dict[str, float]:
    """$/GPU-hour by accelerator (and $/CPU-hour under ``CPU``): the built-in table, then
    ``catalog``'s offers (spot ones for ``spot``), then the study's own ``prices:``."""
    table = {k.upper(): v for k, v in GPU_PRICES.items()}
    table[CPU_KEY] = CPU_PRICE
    if catalog is not None:
        table.update(catalog.gpu)
        if spot:
            table.update(catalog.gpu_spot)
        cpu = (catalog.cpu_spot if spot else None) or catalog.cpu
        if cpu:
            table[CPU_KEY] = cpu
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
