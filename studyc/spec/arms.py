"""Arms as the study means them: sweeps (grid, zip) expanded into named arms.

Naming lives in the spec because checks refer to expanded arms by name; the compiler
turns these into runs.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from studyc.spec.model import Arm, Reuse, Study

_FIELD = re.compile(r"\{([A-Za-z0-9_.]+)(?::([^}]*))?\}")


@dataclass(frozen=True)
class ArmSpec:
    name: str
    family: str  # the key under `arms:` this arm came from
    config: dict[str, Any]  # the arm's overlay on run.config, sweep values included
    resources: dict[str, Any]  # resource fields the arm sets explicitly
    seeds: tuple[int, ...] | None
    command: str | None
    reuse: Reuse | None = None
    same_as: str | None = None
    label: str | None = None
    tags: tuple[str, ...] = ()
    sweep: dict[str, Any] = field(default_factory=dict)

    @property
    def runs(self) -> bool:
        """Whether this arm produces runs (reused and aliased arms do not)."""
        return self.reuse is None and self.same_as is None


def format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return format(value, "g")
    return str(value)


def sanitize(name: str) -> str:
    """A name usable in expressions and paths: '.' -> 'p', '-' -> 'm', others -> '_'."""
    name = name.replace(".", "p").replace("-", "m").replace("+", "")
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


def render_name(template: str, values: dict[str, Any], family: str) -> str:
    def sub(m: re.Match) -> str:
        key, spec = m.group(1), m.group(2)
        if key == "arm":
            return family
        if key not in values:
            raise KeyError(key)
        value = values[key]
        return format(value, spec) if spec else format_value(value)

    return sanitize(_FIELD.sub(sub, template))


def template_fields(template: str) -> list[str]:
    return [m.group(1) for m in _FIELD.finditer(template)]


def set_dotted(config: dict[str, Any], key: str, value: Any) -> None:
    """``a.b: 1`` sets config['a']['b'] = 1."""
    parts = key.split(".")
    node = config
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ValueError(f"'{part}' is not a mapping in the config")
    node[parts[-1]] = value


def sweep_points(arm: Arm) -> list[dict[str, Any]]:
    """The sweep's points: the grid's Cartesian product, each joined with the zip's rows."""
    grid = arm.grid or {}
    zipped = arm.zip_ or {}
    grid_points = [dict(zip(grid, combo)) for combo in itertools.product(*grid.values())] if grid else [{}]
    if zipped:
        length = len(next(iter(zipped.values())))
        zip_points = [{k: v[i] for k, v in zipped.items()} for i in range(length)]
    else:
        zip_points = [{}]
    return [{**g, **z} for g in grid_points for z in zip_points]


def default_template(arm: Arm) -> str:
    keys = list((arm.grid or {}).keys()) + list((arm.zip_ or {}).keys())
    return "{arm}_" + "_".join(f"{k.split('.')[-1]}{{{k}}}" for k in keys)


def expand_arms(study: Study, problem: Callable[[tuple, str, str | None], None] | None = None) -> dict[str, ArmSpec]:
    """Every arm by name, sweeps expanded. Problems (clashing names) go to ``problem``."""

    def report(path: tuple, message: str, hint: str | None = None) -> None:
        if problem is None:
            raise ValueError(message)
        problem(path, message, hint)

    arms: dict[str, ArmSpec] = {}
    for family, arm in study.arms.items():
        explicit = arm.resources.model_dump(exclude_unset=True) if arm.resources else {}
        base = dict(
            family=family,
            resources=explicit,
            seeds=tuple(arm.seeds) if arm.seeds else None,
            command=arm.command,
            reuse=arm.reuse,
            same_as=arm.same_as,
            label=arm.label,
            tags=tuple(arm.tags),
        )
        if not (arm.grid or arm.zip_):
            arms[family] = ArmSpec(name=family, config=dict(arm.config), **base)
            continue
        points = sweep_points(arm)
        listed = arm.name if isinstance(arm.name, list) else None
        if listed is not None and len(listed) != len(points):
            return arms  # reported by the semantic checks
        template = arm.name if isinstance(arm.name, str) else default_template(arm)
        for i, point in enumerate(points):
            config = _deep_copy(arm.config)
            try:
                for key, value in point.items():
                    set_dotted(config, key, value)
            except ValueError as exc:
                report(("arms", family, "grid" if arm.grid else "zip"), f"cannot sweep a key inside a value: {exc}",
                       "a dotted key such as 'optim.lr' needs 'optim' to be a mapping in the config")
                return arms
            try:
                name = listed[i] if listed is not None else render_name(template, point, family)
            except (KeyError, ValueError):
                return arms  # reported by the semantic checks
            if name in arms or (name in study.arms and name != family):
                report(("arms", family, "name"), f"sweep arm name '{name}' is produced twice",
                       "give each point its own name" if listed is not None
                       else "put every swept key in the name template, e.g. '{arm}_lr{lr}'")
                continue
            arms[name] = ArmSpec(name=name, config=config, sweep=point, **base)
    return arms


def _deep_copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value


def run_config(study: Study, arm: ArmSpec, stage: str | None) -> dict[str, Any]:
    """The config an arm's runs get in ``stage``: run.config, the arm's over it, then the
    stage's (None or a stage the study does not have: none)."""
    spec = study.stages.get(stage) if stage is not None else None
    return deep_merge(deep_merge(study.run.config, arm.config), spec.config if spec else {})


def deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """Mappings merge key by key; anything else in ``top`` replaces."""
    out = _deep_copy(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = _deep_copy(value)
    return out
