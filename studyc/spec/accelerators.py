"""The one parser of an accelerator string ('A100:2', 'H100', 'A100-80GB:8'): its name and
GPU count. Every layer that needs a GPU count asks here."""

from __future__ import annotations


def parse(accelerators: str | None) -> tuple[str | None, int]:
    """(name, count): (None, 0) for a CPU-only run; a name without a count means one GPU."""
    if not accelerators:
        return None, 0
    name, _, count = accelerators.partition(":")
    return name, int(count) if count else 1


def gpu_count(accelerators: str | None) -> int:
    return parse(accelerators)[1]
