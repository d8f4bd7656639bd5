"""Load a study file: ruamel.yaml (keeping every node's line and column), profile overlay,
pydantic validation, then the semantic checks. Every problem becomes a positioned
StudyError; all of a file's problems are raised together as StudyErrors.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from studyc.errors import StudyError, StudyErrors, did_you_mean
from studyc.spec.expr import ExprError
from studyc.spec.model import Study


class Source:
    """A parsed YAML document that can say where any node of it is."""

    def __init__(self, file: str, text: str, tree: Any):
        self.file = file
        self.lines = text.splitlines()
        self.tree = tree

    def _line_text(self, line: int) -> str | None:
        return self.lines[line - 1] if 0 < line <= len(self.lines) else None

    def locate(self, path: tuple, key: bool = False) -> tuple[int, int, Any]:
        """1-based (line, col) of the node at ``path`` (or of its key), plus the node.
        Path elements that are not in the tree (pydantic's union tags) are skipped."""
        node, line, col = self.tree, 1, 1
        if isinstance(node, (CommentedMap, CommentedSeq)):
            line, col = node.lc.line + 1, node.lc.col + 1
        for i, part in enumerate(path):
            last = i == len(path) - 1
            if isinstance(node, CommentedMap) and part in node:
                k_line, k_col, v_line, v_col = _lc_entry(node, part)
                if last and key:
                    line, col = k_line + 1, k_col + 1
                else:
                    line, col = v_line + 1, v_col + 1
                node = node[part]
            elif isinstance(node, CommentedSeq) and isinstance(part, int) and 0 <= part < len(node):
                line, col = node.lc.item(part)
                line, col = line + 1, col + 1
                node = node[part]
        return line, col, node

    def error(self, path: tuple, message: str, hint: str | None = None, key: bool = False) -> StudyError:
        line, col, _ = self.locate(path, key=key)
        return StudyError(message, self.file, line, col, hint, self._line_text(line), tuple(path))

    def expr_error(self, path: tuple, err: ExprError, what: str) -> StudyError:
        """An error inside the expression at ``path``, pointing at its column."""
        line, col, node = self.locate(path)
        style = getattr(node, "style", None) if hasattr(node, "style") else None
        quoted = type(node).__name__ in ("DoubleQuotedScalarString", "SingleQuotedScalarString") or style in ('"', "'")
        text_line = self._line_text(line)
        offset = err.col + (1 if quoted else 0)
        if text_line is not None and str(node) not in text_line:
            offset = 0  # a block scalar or a multi-line value: point at its start
        return StudyError(f"{what}: {err.message}", self.file, line, col + offset, err.hint, text_line, tuple(path))


def _lc_entry(node: CommentedMap, key: Any) -> tuple[int, int, int, int]:
    entry = node.lc.data.get(key) if getattr(node.lc, "data", None) else None
    if entry and len(entry) >= 4:
        return entry[0], entry[1], entry[2], entry[3]
    return node.lc.line, node.lc.col, node.lc.line, node.lc.col


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = False
    yaml.preserve_quotes = True
    return yaml


def parse_yaml(text: str, file: str) -> Source:
    """YAML text to a Source, with syntax errors, tabs and duplicate keys positioned."""
    errors = []
    for i, line in enumerate(text.splitlines(), start=1):
        indent = line[: len(line) - len(line.lstrip())]
        if "\t" in indent:
            errors.append(StudyError("tab character in indentation", file, i, indent.index("\t") + 1,
                                     "YAML indents with spaces only: replace the tab with spaces", line))
    if errors:
        raise StudyErrors(errors)
    try:
        tree = _yaml().load(text)
    except DuplicateKeyError as exc:
        mark = exc.problem_mark
        key = (exc.problem or "").split('"')[1] if '"' in (exc.problem or "") else ""
        raise StudyErrors([StudyError(f"duplicate key '{key}'" if key else "duplicate key", file, mark.line + 1,
                                      mark.column + 1, "each key may appear once per mapping; merge or rename one",
                                      _nth_line(text, mark.line + 1))]) from None
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        problem = exc.problem or exc.context or "invalid YAML"
        raise StudyErrors([StudyError(f"YAML syntax error: {problem}", file, line, col, _syntax_hint(problem),
                                      _nth_line(text, line))]) from None
    except YAMLError as exc:
        raise StudyErrors([StudyError(f"YAML syntax error: {exc}", file)]) from None
    if tree is None:
        raise StudyErrors([StudyError("the file is empty", file, 1, 1, "a study starts with `study: <name>`")])
    if not isinstance(tree, CommentedMap):
        raise StudyErrors([StudyError("a study must be a mapping of keys (study:, run:, arms:, ...)", file, 1, 1,
                                      "start with `study: <name>`", _nth_line(text, 1))])
    return Source(file, text, tree)


def _nth_line(text: str, n: int) -> str | None:
    lines = text.splitlines()
    return lines[n - 1] if 0 < n <= len(lines) else None


def _syntax_hint(problem: str) -> str:
    if "mapping values are not allowed" in problem:
        return "a value containing ': ' must be quoted, or a key is mis-indented"
    if "could not find expected ':'" in problem:
        return "a key is missing its ':' or the line is mis-indented"
    if "found character" in problem and "cannot start any token" in problem:
        return "quote values that start with special characters such as @ or `"
    if "expected <block end>" in problem:
        return "check the indentation of this line against the lines above"
    return "check quoting and indentation around this line"


def overlay(base: Any, top: Any) -> Any:
    """Deep-merge ``top`` over ``base``: mappings merge, anything else replaces. Each
    node keeps the position of the file text it came from."""
    if not (isinstance(base, CommentedMap) and isinstance(top, CommentedMap)):
        return top
    out = CommentedMap()
    out._yaml_set_line_col(base.lc.line, base.lc.col)
    for key, value in base.items():
        out[key] = value
        out.lc.add_kv_line_col(key, list(_lc_entry(base, key)))
    for key, value in top.items():
        out[key] = overlay(base[key], value) if key in base else value
        out.lc.add_kv_line_col(key, list(_lc_entry(top, key)))
    return out


def _locate_pydantic(source: Source, loc: tuple) -> tuple:
    """pydantic's loc uses field aliases already; drop union tags it adds."""
    return tuple(p for p in loc if not (isinstance(p, str) and ("[" in p or p in ("str", "int", "float", "bool", "list", "dict"))))


_TYPE_MESSAGES = {
    "missing": "required key is missing",
    "extra_forbidden": "unknown key",
    "int_parsing": "expected a whole number",
    "int_from_float": "expected a whole number",
    "float_parsing": "expected a number",
    "float_type": "expected a number",
    "int_type": "expected a whole number",
    "bool_parsing": "expected true or false",
    "bool_type": "expected true or false",
    "string_type": "expected text",
    "list_type": "expected a list, e.g. [a, b]",
    "dict_type": "expected a mapping of key: value",
    "model_type": "expected a mapping of key: value",
    "too_short": "too few items",
    "too_long": "too many items",
    "greater_than": "value is too small",
    "greater_than_equal": "value is too small",
    "less_than": "value is too large",
    "less_than_equal": "value is too large",
    "string_pattern_mismatch": "invalid name",
    "literal_error": "not one of the allowed values",
}


def pydantic_errors(source: Source, exc: ValidationError, model: type) -> list[StudyError]:
    errors = []
    seen = set()
    for err in exc.errors(include_url=False):
        path = _locate_pydantic(source, tuple(err["loc"]))
        is_key = bool(err["loc"]) and err["loc"][-1] == "[key]"
        kind = err["type"]
        key = (path, kind)
        if key in seen:
            continue  # union members repeat the same complaint
        seen.add(key)
        message = _TYPE_MESSAGES.get(kind, err["msg"])
        hint = None
        if kind == "extra_forbidden":
            name = str(path[-1]) if path else "?"
            message = f"unknown key '{name}'"
            hint = did_you_mean(name, _fields_at(model, path[:-1])) or "remove it"
            if any(c in name for c in "()<>=*/") or name != name.strip():
                hint = "a comma inside a {flow: mapping} ends the value: quote the expression or write it as a block"
            errors.append(source.error(path, message, hint, key=True))
            continue
        if kind == "missing":
            name = str(path[-1]) if path else "?"
            message = f"required key '{name}' is missing"
            hint = f"add `{name}:` here"
            errors.append(source.error(path[:-1], message, hint, key=bool(path[:-1])))
            continue
        if kind == "literal_error":
            expected = err.get("ctx", {}).get("expected", "")
            message = f"'{err.get('input')}' is not allowed here"
            hint = f"expected {expected}" if expected else None
            if is_key:
                message = f"unknown key '{path[-1]}'"
                errors.append(source.error(path, message, hint, key=True))
                continue
        elif kind == "string_pattern_mismatch":
            hint = "names may use letters, digits and _ (studies also . and -), and must contain a letter"
            if is_key:
                errors.append(source.error(path, f"invalid name '{path[-1]}'", hint, key=True))
                continue
        elif kind == "studyc":  # the model's own checks carry their hint
            hint = err.get("ctx", {}).get("hint")
        elif kind in ("value_error", "assertion_error"):
            message = str(err.get("ctx", {}).get("error", err["msg"]))
        elif kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
            limit = next(iter(err.get("ctx", {}).values()), None)
            op = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}[kind]
            message = f"{message}: must be {op} {limit}, got {err.get('input')!r}"
        elif "input" in err and not isinstance(err["input"], (dict, list)):
            message = f"{message}, got {err['input']!r}"
        errors.append(source.error(path, message, hint))
    return errors


def _fields_at(model: type, path: tuple) -> list[str]:
    """Field names (by alias) of the model reached by ``path`` from ``model``."""
    import typing

    from pydantic import BaseModel

    current: Any = model
    for part in path:
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = next((f for n, f in current.model_fields.items() if (f.alias or n) == part), None)
            if field is None:
                return []
            current = field.annotation
        else:
            args = [a for a in typing.get_args(current) if a is not type(None)]
            models = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
            if typing.get_origin(current) is dict and args:
                current = args[-1]
            elif models:
                current = models[0]
                current = _fields_model_step(current, part)
                if current is None:
                    return []
            else:
                return []
    while not (isinstance(current, type) and issubclass(current, BaseModel)):
        args = [a for a in typing.get_args(current) if isinstance(a, type) and issubclass(a, BaseModel)]
        if not args:
            return []
        current = args[0]
    return [f.alias or n for n, f in current.model_fields.items()]


def _fields_model_step(model: Any, part: Any) -> Any:
    field = next((f for n, f in model.model_fields.items() if (f.alias or n) == part), None)
    return field.annotation if field else None


def _plain(node: Any) -> Any:
    """ruamel containers and scalar subclasses to plain Python values."""
    if isinstance(node, dict):
        return {str(k) if not isinstance(k, (int, float, bool)) else k: _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    if isinstance(node, bool) or node is None:
        return node
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    if isinstance(node, str):
        return str(node)
    return node


class LoadedStudy:
    """A validated study together with where it came from."""

    def __init__(self, study: Study, source: Source, path: Path, profile: str | None):
        self.study = study
        self.source = source
        self.path = path
        self.profile = profile

    @property
    def spec_hash(self) -> str:
        canonical = json.dumps(self.study.model_dump(mode="json", by_alias=True, exclude={"profiles"}), sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def load(path: str | Path, profile: str | None = None, text: str | None = None) -> LoadedStudy:
    """Read, overlay ``profile``, validate. Raises StudyErrors listing every problem."""
    path = Path(path)
    file = str(path)
    if text is None:
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise StudyErrors([StudyError("file not found", file, hint="check the path")]) from None
        except (UnicodeDecodeError, IsADirectoryError, PermissionError) as exc:
            raise StudyErrors([StudyError(f"cannot read the file: {exc}", file)]) from None
    source = parse_yaml(text, file)
    tree = source.tree
    if profile is not None:
        profiles = tree.get("profiles")
        if not isinstance(profiles, CommentedMap) or profile not in profiles:
            names = list(profiles) if isinstance(profiles, CommentedMap) else []
            hint = did_you_mean(profile, names) if names else "this study defines no profiles"
            raise StudyErrors([source.error(("profiles",) if names else (), f"unknown profile '{profile}'", hint, key=True)])
        overlay_tree = profiles[profile]
        if not isinstance(overlay_tree, CommentedMap):
            raise StudyErrors([source.error(("profiles", profile), "a profile must be a mapping of overrides")])
        merged = overlay(tree, overlay_tree)
        source = Source(file, text, merged)
    try:
        study = Study.model_validate(_plain(source.tree))
    except ValidationError as exc:
        raise StudyErrors(pydantic_errors(source, exc, Study)) from None
    from studyc.spec.semantics import check_study

    errors = check_study(study, source)
    if errors:
        raise StudyErrors(errors)
    return LoadedStudy(study, source, path, profile)


def validate_file(path: str | Path) -> list[StudyError]:
    """Every problem in a file, in the study and in each of its profiles."""
    try:
        loaded = load(path)
    except StudyErrors as exc:
        return exc.errors
    errors: list[StudyError] = []
    seen = set()
    for name in loaded.study.profiles:
        try:
            load(path, profile=name)
        except StudyErrors as exc:
            for err in exc.errors:
                key = (err.line, err.col, err.message)
                if key not in seen:
                    seen.add(key)
                    err.message = f"{err.message} (with profile '{name}')"
                    errors.append(err)
    return errors


def load_study(path: str | Path, profile: str | None = None) -> Study:
    return load(path, profile).study
