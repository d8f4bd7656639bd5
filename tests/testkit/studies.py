"""Small study texts the tests write and run."""

from __future__ import annotations


def one_run_study(name: str, command: str, config: str | None = None, metric: str = "loss", extra: str = "") -> str:
    """YAML of a study with one arm `a`, one seed and a tiny time estimate; ``config`` as
    a flow mapping; ``extra`` goes after `arms:` (more arms, or further sections)."""
    config_line = f"  config: {config}\n" if config else ""
    return (f"study: {name}\nrun:\n  command: {command}\n{config_line}  seeds: [0]\n  resources: {{hours: 0.001}}\n"
            f"metrics:\n  {metric}: {{goal: min}}\narms:\n  a: {{}}\n{extra}")
