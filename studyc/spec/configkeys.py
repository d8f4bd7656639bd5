"""Config keys a study sets must exist in the base config ``run.config``, so a typo
(``label_smothing: 0.1``) is an error instead of a run that quietly trains the default.
A key the study means to add is declared with a leading ``+``, as in Hydra:
``config: {+dropout: 0.1}``; the ``+`` is dropped from the resolved config.

Checked on the file as written (the ``+`` is gone from the validated models), for arms,
sweeps (grid, zip: dotted keys), stages and profiles.
"""

from __future__ import annotations

from typing import Any, Callable

from studyc.errors import did_you_mean

Problem = Callable[[tuple, str, "str | None"], None]


def _plain_key(key: Any) -> Any:
    return key[1:] if isinstance(key, str) and key.startswith("+") else key


def strip_new(value: Any) -> Any:
    """The config as runs get it: ``+key`` -> ``key``, at every level (iteratively: a
    deeply nested config must not exhaust the stack)."""
    if not isinstance(value, dict):
        return value
    root: dict[Any, Any] = {}
    stack = [(value, root)]
    while stack:
        source, target = stack.pop()
        for key, item in source.items():
            if isinstance(item, dict):
                target[_plain_key(key)] = {}
                stack.append((item, target[_plain_key(key)]))
            else:
                target[_plain_key(key)] = item
    return root


def _mapping(node: Any) -> dict[str, Any]:
    return node if isinstance(node, dict) else {}


def _declared(overlay: dict[str, Any]) -> dict[str, Any]:
    """The keys an overlay declares new (with their values), '+' dropped."""
    return {k[1:]: strip_new(v) for k, v in overlay.items() if isinstance(k, str) and k.startswith("+")}


def _hint(close: str | None, declared: str) -> str:
    new = f"a key the study adds is declared with '+': {declared}"
    if not close:
        return new[0].upper() + new[1:]
    return f"{close} Or, if {new}" if close.endswith("?") else f"{close}; {new}"


def check_overlay(base: dict[str, Any], overlay: Any, path: tuple, problem: Problem) -> None:
    """Every key of ``overlay`` exists in ``base`` (into nested mappings), or is declared
    new with '+'."""
    stack = [(base, overlay, path)]
    while stack:
        base, overlay, path = stack.pop()
        if not isinstance(overlay, dict):
            continue
        for key, value in overlay.items():
            if not isinstance(key, str):
                continue
            name, new = (key[1:], True) if key.startswith("+") else (key, False)
            if new and name in overlay:
                problem((*path, key), f"'{name}' is set twice, as '{key}' and as '{name}'", "keep one of them")
            elif new and name in base:
                problem((*path, key), f"'{key}' declares a new config key, but run.config already has '{name}'",
                        f"drop the '+': write '{name}'")
            elif not new and name not in base:
                problem((*path, key), f"'{name}' is not a key of run.config", _hint(did_you_mean(name, base),
                                                                                  f"'+{name}: ...'"))
            elif not new and isinstance(base[name], dict):
                stack.append((base[name], value, (*path, key)))


def check_dotted(base: dict[str, Any], key: Any, path: tuple, problem: Problem) -> None:
    """A swept key (``optim.lr``, ``+dropout``) names a path of ``base``, or is declared new."""
    if not isinstance(key, str):
        return
    name, new = (key[1:], True) if key.startswith("+") else (key, False)
    node: Any = base
    for depth, part in enumerate(name.split(".")):
        if not isinstance(node, dict) or part not in node:
            if not new:
                where = "run.config" if depth == 0 else f"run.config.{'.'.join(name.split('.')[:depth])}"
                close = did_you_mean(part, node) if isinstance(node, dict) else None
                problem(path, f"'{name}' is not a key of run.config ('{part}' is not in {where})",
                        _hint(close, f"'+{name}'"))
            return
        node = node[part]
    if new:
        problem(path, f"'{key}' declares a new config key, but run.config already has '{name}'",
                f"drop the '+': write '{name}'")


def _check_arms_and_stages(tree: dict[str, Any], base: dict[str, Any], prefix: tuple, problem: Problem,
                           declared_by_arm: dict[str, dict[str, Any]] | None = None) -> dict[str, dict[str, Any]]:
    """Arms (config, grid, zip) and stages (config) under ``tree``; returns the keys each
    arm declares new."""
    declared: dict[str, dict[str, Any]] = {}
    for name, arm in _mapping(tree.get("arms")).items():
        arm = _mapping(arm)
        inherited = (declared_by_arm or {}).get(name, {})  # what the arm declares in the file, for a profile
        check_overlay({**base, **inherited}, arm.get("config"), (*prefix, "arms", name, "config"), problem)
        mine = declared[name] = {**inherited, **_declared(_mapping(arm.get("config")))}
        for kind in ("grid", "zip"):
            for key in _mapping(arm.get(kind)):
                check_dotted({**base, **mine}, key, (*prefix, "arms", name, kind, key), problem)
    for name, stage in _mapping(tree.get("stages")).items():
        check_overlay(base, _mapping(stage).get("config"), (*prefix, "stages", name, "config"), problem)
    return declared


def check_config_keys(tree: Any, problem: Problem) -> None:
    """``tree``: the study file as written (before any profile is laid over it)."""
    tree = _mapping(tree)
    base = _mapping(_mapping(tree.get("run")).get("config"))
    for key in base:
        if isinstance(key, str) and key.startswith("+"):
            problem(("run", "config", key), f"'{key}': run.config is the base config, its keys need no '+'",
                    f"write '{key[1:]}'")
    base = strip_new(base)
    declared = _check_arms_and_stages(tree, base, (), problem)
    for profile, overlay in _mapping(tree.get("profiles")).items():
        overlay = _mapping(overlay)
        run_config = _mapping(_mapping(overlay.get("run")).get("config"))
        check_overlay(base, run_config, ("profiles", profile, "run", "config"), problem)
        _check_arms_and_stages(overlay, {**base, **_declared(run_config)}, ("profiles", profile), problem, declared)
