"""`studyc promote`: write the winner's config back into the study (as its new
``run.config`` values) or into a config file, keeping the file's comments and layout.

The winner is the judged champion (the best arm of the last stage with complete results,
by the primary metric, as the report names it) or an arm named on purpose. The values
written are the study's own resolution of that arm (run.config, then the arm, then the
stage it won in), without the profile: a profile runs the study smaller, it is not part of
the winner. With ``report.leaderboard`` set, the winner's row is marked in the same step.

Files are edited by ``studyc.yamledit`` (ruamel.yaml's round-trip mode, imported only
for this command): only the lines of the entries that change differ.
"""

from __future__ import annotations

import difflib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from studyc import yamledit
from studyc.artifacts import atomic_write
from studyc.errors import RunError, StudyErrors
from studyc.runtime.store import Store
from studyc.spec.arms import deep_merge, expand_arms, run_config
from studyc.spec.loader import LoadedStudy, load

STUDY_TARGET = ("run", "config")


@dataclass
class Winner:
    arm: str
    stage: str
    why: str  # how it was chosen, with its number
    config: dict[str, Any]  # resolved on the study itself: run.config < arm < stage


@dataclass
class Promotion:
    winner: Winner
    target: Path
    at: str  # where in the target: 'run.config', or '' for a whole config file
    changes: list[dict[str, Any]]  # {key, old, new}; old is None for a key that is added
    diff: str
    written: bool
    leaderboard: dict[str, Any] | None = None
    decision: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"arm": self.winner.arm, "stage": self.winner.stage, "why": self.winner.why,
                "target": str(self.target), "at": self.at, "changes": self.changes, "written": self.written,
                "leaderboard": self.leaderboard, "decision": self.decision}


# ---------------------------------------------------------------- the winner


def find_winner(judged: LoadedStudy, own: LoadedStudy, store: Store, arm: str | None = None) -> tuple[Winner, Any]:
    """The champion of ``judged``'s results (or ``arm``), with its config resolved on
    ``own`` (the study without profile). Returns the winner and (results, verdicts)."""
    from studyc.errors import did_you_mean
    from studyc.report.collect import collect
    from studyc.report.judge import Judge

    study, profile = judged.study, judged.profile
    names = list(expand_arms(study)) if arm is not None else []
    if arm is not None and arm not in names:
        raise RunError(f"--arm: unknown arm '{arm}'", did_you_mean(arm, names))
    results = collect(study, store, profile)
    if not results.all_runs():
        raise RunError(f"no results yet: the store at {store.home} holds no runs of study '{study.study}'"
                       + (f" with profile '{profile}'" if profile else ""),
                       f"run it first: `studyc run {judged.path}" + (f" --profile {profile}`" if profile else "`")
                       + ", or point --store (or $STUDYC_HOME) at the store that has its runs")
    judge = Judge(study, results)
    verdicts = judge.all()
    metric = study.primary_metric
    chosen = arm is not None
    arm = arm or verdicts["champion"]
    if arm is None:
        raise RunError(f"no champion yet: no arm of '{study.study}' has complete results for its primary metric "
                       f"'{metric}'", f"let the runs finish (`studyc status {judged.path}`), or name the arm to "
                       "promote with --arm")
    result = results.arms.get(arm)
    if result is None or result.source == "reuse":
        raise RunError(f"arm '{arm}' has " + ("no results yet" if result is None else
                                              "reused results: this study did not run it"),
                       "promote an arm this study ran (the champion by default)")
    specs = expand_arms(own.study)
    spec = specs.get(arm)
    if spec is not None and spec.same_as is not None:
        spec = specs.get(spec.same_as)
    if spec is None:
        raise RunError(f"arm '{arm}' exists only with profile '{profile}'",
                       "the values promoted are the study's own: add the arm to the study itself")
    stage = result.stage or "main"
    estimate = judge.arm_estimate(result, arm, metric)
    unit = study.metrics[metric].unit
    value = ("incomplete: " + "; ".join(estimate.missing) if estimate.is_missing else
             f"{metric} = {estimate.point:.4g}" + (f" {unit}" if unit else "") + f" (n={estimate.n})")
    where = f"stage {stage}" if stage in own.study.stages else "the study"
    why = f"chosen with --arm, {value}" if chosen else f"champion: the best arm of {where} by {metric}, {value}"
    config = _declared(run_config(own.study, spec, stage))
    return Winner(arm, stage, why, config), (results, verdicts)


def _declared(config: dict[str, Any]) -> dict[str, Any]:
    """Keys as the config file spells them: a new key declared '+key' in an arm is 'key'."""
    return {(k.removeprefix("+") if isinstance(k, str) else k): _declared(v) if isinstance(v, dict) else v
            for k, v in config.items()}


def drop_plus(text: str) -> str:
    """Keys declared new with a leading '+' (``+dropout: 0.1``) that run.config now has
    lose the '+', in place: declaring an existing key new is an error. Arms (config,
    grid, zip), stages and profiles are looked at, as the config-key check does."""
    from ruamel.yaml.comments import CommentedMap

    doc = yamledit.load(text)
    base = yamledit.plain(_node_or(doc, ("run", "config")))
    spots: list[tuple[int, int]] = []  # (line, column) of each key to change

    def overlay(mapping: Any, known: Any) -> None:
        for key, value in (mapping.items() if isinstance(mapping, CommentedMap) else ()):
            if not isinstance(key, str) or not isinstance(known, dict):
                continue
            if key.startswith("+") and key[1:] in known:
                spots.append(mapping.lc.key(key))
            elif not key.startswith("+") and isinstance(known.get(key), dict):
                overlay(value, known[key])

    def swept(mapping: Any) -> None:
        for key in (mapping if isinstance(mapping, CommentedMap) else ()):
            if isinstance(key, str) and key.startswith("+") and _has_path(base, key[1:].split(".")):
                spots.append(mapping.lc.key(key))

    def arms_and_stages(tree: Any) -> None:
        for arm in _node_or(tree, ("arms",)).values():
            overlay(_node_or(arm, ("config",)), base)
            swept(_node_or(arm, ("grid",)))
            swept(_node_or(arm, ("zip",)))
        for stage in _node_or(tree, ("stages",)).values():
            overlay(_node_or(stage, ("config",)), base)

    arms_and_stages(doc)
    for profile in _node_or(doc, ("profiles",)).values():
        overlay(_node_or(profile, ("run", "config")), base)
        arms_and_stages(profile)
    lines = text.splitlines(keepends=True)
    for line, col in sorted(spots, reverse=True):
        at = col + (1 if lines[line][col] in "'\"" else 0)  # a quoted key: '+dropout'
        if lines[line][at] == "+":
            lines[line] = lines[line][:at] + lines[line][at + 1:]
    return "".join(lines)


def _node_or(doc: Any, path: tuple[str, ...]) -> Any:
    """The mapping at ``path``, or an empty one where the path is missing or not a mapping."""
    for key in path:
        doc = doc.get(key) if isinstance(doc, dict) else None
    return doc if isinstance(doc, dict) else {}


def _has_path(config: Any, parts: list[str]) -> bool:
    for part in parts:
        if not isinstance(config, dict) or part not in config:
            return False
        config = config[part]
    return True


def _json_config(text: str, path: Path) -> dict[str, Any]:
    try:
        data = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError as exc:
        raise RunError(f"{path}:{exc.lineno}:{exc.colno}: not valid JSON: {exc.msg}", "fix the file, or promote into "
                       "a new one") from None
    if not isinstance(data, dict):
        raise RunError(f"{path} is not a JSON object of config keys", 'a config file is {"key": value, ...}')
    return data


# ---------------------------------------------------------------- the command


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ""
    except (OSError, UnicodeDecodeError) as exc:
        raise RunError(f"cannot read {path}: {exc}", "check the path and its permissions") from None


def promote(study_file: Path, profile: str | None, store: Store, to: Path | None = None, arm: str | None = None,
            dryrun: bool = False) -> Promotion:
    if to is not None and to.resolve() == Path(study_file).resolve():
        to = None  # the study itself: its run.config
    judged = load(study_file, profile)
    own = load(study_file) if profile else judged
    winner, (results, verdicts) = find_winner(judged, own, store, arm)
    target = to or study_file
    text = _read(target)
    if to is not None and to.suffix.lower() == ".json":
        at: tuple[str, ...] = ()
        current = _json_config(text, target)
        new_text = json.dumps(deep_merge(current, winner.config), indent=2) + "\n"
    else:
        at = STUDY_TARGET if to is None else ()
        new_text = yamledit.edit_yaml(text, at, winner.config, str(target))
        if to is None:
            current = own.study.run.config
            new_text = drop_plus(new_text)
            _check_study(study_file, new_text)
        else:
            current = yamledit.plain(yamledit.load(text)) if text.strip() else {}
            if not text:
                new_text = f"# promoted by studyc from {own.study.study}: {winner.arm} ({winner.why})\n" + new_text
        _check_reads_back(new_text, at, winner.config, target)
    changes = yamledit.changes(current, winner.config)
    diff = "".join(difflib.unified_diff(text.splitlines(keepends=True), new_text.splitlines(keepends=True),
                                        fromfile=str(target), tofile=str(target)))
    board = None
    if not dryrun:
        if new_text != text:
            atomic_write(target, new_text.encode("utf-8"))
        if judged.study.report.leaderboard:
            board = mark_leaderboard(judged, results, winner, f"{target}" + (f" {'.'.join(at)}" if at else ""))
    return Promotion(winner, target, ".".join(at), changes, diff, written=not dryrun and new_text != text,
                     leaderboard=board, decision=verdicts["decision"])


def _check_reads_back(text: str, at: tuple[str, ...], values: dict[str, Any], target: Path) -> None:
    """The written values must be what the study loader (PyYAML) reads: a guard on the
    YAML 1.1 / 1.2 differences that ``_scalar`` handles."""
    import yaml

    node = yaml.safe_load(text) or {}
    for key in at:
        node = node.get(key, {}) if isinstance(node, dict) else {}
    wrong = [c["key"] for c in yamledit.changes(node, values)]
    if wrong:
        raise RunError(f"promote would write values that read back differently from {target}: {', '.join(wrong)}; "
                       "nothing was written (a bug in studyc promote)", "set these values by hand, or use --to x.json")


def _check_study(path: Path, text: str) -> None:
    """A promoted study must still validate; otherwise nothing is written."""
    try:
        load(path, text=text)
    except StudyErrors as exc:
        problems = "\n  ".join(str(e).replace("\n", " ") for e in exc.errors[:5])
        raise RunError(f"the promoted study would not validate, so {path} was not changed:\n  {problems}",
                       "promote into a config file with --to FILE, or fix the study first") from None


def mark_leaderboard(loaded: LoadedStudy, results: Any, winner: Winner, where: str) -> dict[str, Any]:
    """The winner's leaderboard row (added or refreshed), marked with when and where it
    was promoted."""
    from studyc.report import leaderboard

    rows = [r for r in leaderboard.rows(results, results.specs) if r["arm"] == winner.arm]
    if not rows:
        return {"path": loaded.study.report.leaderboard, "added": 0, "updated": 0,
                "note": "the arm has no finished runs"}
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    rows[0][leaderboard.PROMOTED] = f"{stamp} into {where}"
    path = Path(loaded.study.report.leaderboard)
    return {"path": str(path), **leaderboard.update(path, rows)}
