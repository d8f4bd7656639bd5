"""Checks on what becomes a process: commands, their placeholders, the environment and
seeds. Whatever passes here can be started: a study that validates never fails later
because of a placeholder that cannot be filled, an environment the OS refuses, or a seed
the store cannot hold.

A placeholder is ``{seed}`` or ``{config.key.sub}``. Other braces are the shell's or the
program's (``${HOME}``, ``{a,b}``, JSON such as ``'{"lr": 1}'``) and are left alone; a
bare name in braces (``{lr}``) is taken for a mistyped placeholder.
"""

from __future__ import annotations

import re
from typing import Any

from studyc.errors import StudyError, did_you_mean
from studyc.spec.arms import ArmSpec, run_config
from studyc.spec.expr import ExprError
from studyc.spec.model import Study

PLACEHOLDER = re.compile(r"(?<!\$)\{([A-Za-z_][A-Za-z0-9_.]*)\}")  # the compiler fills what this finds
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
INT64 = 1 << 63


def _lookup(name: str, arm: str, config: dict[str, Any]) -> ExprError | None:
    """Why ``{name}`` (config.<parts>) cannot be filled from ``config``, None when it can."""
    parts = name.split(".")[1:]
    value: Any = config
    for i, part in enumerate(parts):
        where = ".".join(["config", *parts[:i]])
        if not isinstance(value, dict):
            return ExprError(f"placeholder '{{{name}}}' cannot be filled: {where} is {str(value)[:40]!r} in arm "
                             f"'{arm}', not a mapping", 0, "fix the placeholder, or make it a mapping in run.config")
        if part not in value:
            close = did_you_mean(part, [str(k) for k in value])
            return ExprError(f"unknown placeholder '{{{name}}}': {where} has no key '{part}' (arm '{arm}')", 0,
                             close if close and close.startswith("did") else "add the key to run.config")
        value = value[part]
    if "\0" in str(value):
        return ExprError(f"placeholder '{{{name}}}' is filled with text holding a NUL character (arm '{arm}')", 0,
                         "a command line cannot contain NUL (\\0): remove it from the config value")
    return None


def _command_problems(command: str, configs: list[tuple[str, dict[str, Any]]]) -> list[ExprError]:
    """Placeholders of ``command`` that some arm's config cannot fill (one error each)."""
    problems = []
    for match in PLACEHOLDER.finditer(command):
        name = match.group(1)
        if name == "seed":
            continue
        if not name.startswith("config."):
            problems.append(ExprError(f"unknown placeholder '{{{name}}}'", match.start(),
                                      f"use {{seed}} or {{config.<key>}}, e.g. {{config.{name}}}; a literal brace "
                                      "next to a name needs other quoting, e.g. '{\"" + name + "\": 1}'"))
            continue
        for arm, config in configs:
            problem = _lookup(name, arm, config)
            if problem:
                problem.col = match.start()
                problems.append(problem)
                break
    return problems


def _arm_configs(study: Study, arms: list[ArmSpec]) -> list[tuple[str, dict[str, Any]]]:
    """Each arm's config as its runs get it, in each stage that sets config (stage
    config laid over; a promoted stage may run any arm)."""
    return [(arm.name, {**run_config(study, arm, stage), "seed": 0}) for arm in arms
            for stage in list(study.stages) or [None]]


def check_run_inputs(study: Study, arms: dict[str, ArmSpec], source: Any) -> list[StudyError]:
    errors: list[StudyError] = []
    if study.study.strip(".") == "" or study.study.startswith("."):  # it names directories: reports/<study>/
        errors.append(source.error(("study",), f"'{study.study}' cannot be a study name: it names directories",
                                   "start the name with a letter or digit, e.g. `study: burgers_ablation`"))
    running = [a for a in arms.values() if a.runs]
    plain = [a for a in running if a.command is None]
    if plain:
        for err in _command_problems(study.run.command, _arm_configs(study, plain)):
            errors.append(source.expr_error(("run", "command"), err, "command"))
    families: dict[str, list[ArmSpec]] = {}
    for arm in running:
        if arm.command is not None:
            families.setdefault(arm.family, []).append(arm)
    for family, members in families.items():
        for err in _command_problems(members[0].command, _arm_configs(study, members)):
            errors.append(source.expr_error(("arms", family, "command"), err, "command"))
    for name, stage in study.stages.items():  # an evaluation stage's command, over the arms it may evaluate
        if stage.evaluate is not None:
            for err in _command_problems(stage.evaluate, _arm_configs(study, running)):
                errors.append(source.expr_error(("stages", name, "evaluate"), err, "evaluation command"))
    for name, value in study.run.env.items():
        if not _ENV_NAME.match(name):
            errors.append(source.error(("run", "env", name), f"'{name[:40]}' cannot be an environment variable name",
                                       "use letters, digits and _, not starting with a digit", key=True))
        if "\0" in value:
            errors.append(source.error(("run", "env", name), f"the value of {name[:40]} holds a NUL character",
                                       "an environment value cannot contain NUL (\\0): remove it"))
    seed_lists = [(("run", "seeds"), study.run.seeds)]
    seed_lists += [(("arms", f, "seeds"), a.seeds) for f, a in study.arms.items() if a.seeds]
    seed_lists += [(("stages", s, "seeds"), st.seeds) for s, st in study.stages.items() if st.seeds]
    for path, seeds in seed_lists:
        for i, seed in enumerate(seeds):
            if not -INT64 <= seed < INT64:
                errors.append(source.error((*path, i), f"seed {seed} does not fit in 64 bits",
                                           f"use a seed between 0 and {INT64 - 1}"))
    return errors
