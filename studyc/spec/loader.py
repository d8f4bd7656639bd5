"""Load a study file: YAML parsed into a tree that keeps every node's line and column
(``studyc.spec.yamlpos``), profile overlay, pydantic validation, then the semantic checks.
Every problem becomes a positioned StudyError; all of a file's problems are raised
together as StudyErrors.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from studyc.errors import StudyError, StudyErrors, did_you_mean
from studyc.spec.expr import ExprError
from studyc.spec.limits import limit, raise_hint
from studyc.spec.model import Study
from studyc.spec.yamlpos import PMap, PSeq, StructureError, parse


class Source:
    """A parsed YAML document that can say where any node of it is."""

    def __init__(self, file: str, lines: list[str], tree: Any):
        self.file = file
        self.lines = lines
        self.tree = tree
        self.base = self  # the file as written, before a profile's overlay

    def with_tree(self, tree: Any) -> "Source":
        """The same file's lines with another tree over them (a profile's overlay)."""
        out = Source(self.file, self.lines, tree)
        out.base = self.base
        return out

    def _line_text(self, line: int) -> str | None:
        return self.lines[line - 1] if 0 < line <= len(self.lines) else None

    def locate(self, path: tuple, key: bool = False) -> tuple[int, int, Any]:
        """1-based (line, col) of the node at ``path`` (or of its key), plus the node.
        Path elements that are not in the tree (pydantic's union tags) are skipped."""
        node = self.tree
        line, col = node.at if isinstance(node, (PMap, PSeq)) else (0, 0)
        for i, part in enumerate(path):
            if isinstance(node, PMap) and part in node:
                line, col = (node.key_at if key and i == len(path) - 1 else node.value_at)[part]
                node = node[part]
            elif isinstance(node, PSeq) and isinstance(part, int) and 0 <= part < len(node):
                line, col = node.item_at[part]
                node = node[part]
        return line + 1, col + 1, node

    def error(self, path: tuple, message: str, hint: str | None = None, key: bool = False) -> StudyError:
        line, col, _ = self.locate(path, key=key)
        return StudyError(message, self.file, line, col, hint, self._line_text(line), tuple(path))

    def expr_error(self, path: tuple, err: ExprError, what: str) -> StudyError:
        """An error inside the expression at ``path``, pointing at its column."""
        line, col, node = self.locate(path)
        quoted = getattr(node, "style", None) in ('"', "'")
        text_line = self._line_text(line)
        offset = err.col + (1 if quoted else 0)
        if text_line is not None and str(node) not in text_line:
            offset = 0  # a block scalar or a multi-line value: point at its start
        return StudyError(f"{what}: {err.message}", self.file, line, col + offset, err.hint, text_line, tuple(path))


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
        tree = parse(text)
    except StructureError as exc:
        mark = exc.problem_mark
        raise StudyErrors([StudyError(exc.problem, file, mark.line + 1, mark.column + 1, exc.hint,
                                      _nth_line(text, mark.line + 1))]) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        problem = exc.problem or exc.context or "invalid YAML"
        raise StudyErrors([StudyError(f"YAML syntax error: {problem}", file, line, col, _syntax_hint(problem),
                                      _nth_line(text, line))]) from None
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow: at its line and column
        bad = _NOT_YAML.search(text)  # libyaml counts bytes, not characters: find it again
        line, col = _line_col(text, bad.start() if bad else exc.position)
        what = f"U+{exc.character:04X}" if isinstance(exc.character, int) else repr(exc.character)
        raise StudyErrors([StudyError(f"character {what} is not allowed in YAML ({exc.reason})", file, line, col,
                                      "remove it, or write it as an escape in a double-quoted string, e.g. \"\\t\"",
                                      _nth_line(text, line))]) from None
    except UnicodeEncodeError as exc:  # a lone surrogate in text handed over as a str
        line, col = _line_col(text, exc.start)
        raise StudyErrors([StudyError("a lone surrogate character is not text", file, line, col, "remove it",
                                      _nth_line(text, line))]) from None
    except (yaml.YAMLError, RecursionError) as exc:
        raise StudyErrors([StudyError(f"YAML syntax error: {exc}", file, hint="check the file's characters and nesting")]) from None
    if tree is None:
        raise StudyErrors([StudyError("the file is empty", file, 1, 1, "a study starts with `study: <name>`")])
    if not isinstance(tree, PMap):
        raise StudyErrors([StudyError("a study must be a mapping of keys (study:, run:, arms:, ...)", file, 1, 1,
                                      "start with `study: <name>`", _nth_line(text, 1))])
    return Source(file, text.splitlines(), tree)


_NOT_YAML = re.compile("[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _line_col(text: str, index: int) -> tuple[int, int]:
    """1-based line and column of the character at ``index``."""
    line = text.count("\n", 0, index) + 1
    return line, index - (text.rfind("\n", 0, index) + 1) + 1


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
    if not (isinstance(base, PMap) and isinstance(top, PMap)):
        return top
    out = PMap(base.at)
    for key, value in base.items():
        out.put(key, value, base.key_at[key], base.value_at[key])
    for key, value in top.items():
        out.put(key, overlay(base[key], value) if key in base else value, top.key_at[key], top.value_at[key])
    return out


def _locate_pydantic(source: Source, loc: tuple) -> tuple:
    """pydantic's loc uses field aliases already; drop the union tags it adds (a key of
    the file that looks like one, e.g. 'x[1]', stays)."""
    node, path = source.tree, []
    for part in loc:
        if isinstance(node, (PMap, PSeq)) and (part in node if isinstance(node, PMap) else
                                               isinstance(part, int) and 0 <= part < len(node)):
            path.append(part)
            node = node[part]
        elif not (isinstance(part, str) and ("[" in part or part in ("str", "int", "float", "bool", "list", "dict"))):
            path.append(part)
            node = None
    return tuple(path)


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
    """Positioned containers and text to plain Python values."""
    if isinstance(node, dict):
        return {k if isinstance(k, (int, float, bool)) else str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
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


def read_source(path: str | Path, text: str | None = None) -> Source:
    """Read and parse a study file (YAML only: no validation yet)."""
    file = str(path)
    most = limit("STUDYC_MAX_STUDY_BYTES")
    if text is None:
        try:
            with open(path, "rb") as fh:
                data = fh.read(most + 1)
        except FileNotFoundError:
            raise StudyErrors([StudyError("file not found", file, hint="check the path")]) from None
        except OSError as exc:
            raise StudyErrors([StudyError(f"cannot read the file: {exc.strerror or exc}", file)]) from None
        if len(data) <= most:
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError as exc:
                line = data[:exc.start].count(b"\n") + 1
                col = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
                raise StudyErrors([StudyError(f"not UTF-8 text: byte 0x{data[exc.start]:02x}", file, line, col,
                                              "save the file as UTF-8")]) from None
    if text is None or len(text) > most:
        raise StudyErrors([StudyError(f"the file is larger than {most} bytes", file, 1, 1,
                                      "a study is a page or two of YAML; " + raise_hint("STUDYC_MAX_STUDY_BYTES"))])
    return parse_yaml(text, file)


def with_profile(source: Source, profile: str) -> Source:
    """The study with ``profile`` laid over it (the parsed tree itself is not changed)."""
    tree = source.tree
    profiles = tree.get("profiles")
    if not isinstance(profiles, PMap) or profile not in profiles:
        names = list(profiles) if isinstance(profiles, PMap) else []
        hint = did_you_mean(profile, names) if names else "this study defines no profiles"
        raise StudyErrors([source.error(("profiles",) if names else (), f"unknown profile '{profile}'", hint, key=True)])
    overlay_tree = profiles[profile]
    if not isinstance(overlay_tree, PMap):
        raise StudyErrors([source.error(("profiles", profile), "a profile must be a mapping of overrides")])
    return source.with_tree(overlay(tree, overlay_tree))


def validate_source(source: Source, path: Path, profile: str | None) -> LoadedStudy:
    """pydantic validation, then the semantic checks; every problem at once."""
    try:
        study = Study.model_validate(_plain(source.tree))
    except ValidationError as exc:
        raise StudyErrors(pydantic_errors(source, exc, Study)) from None
    too_many = _too_many_arms(study, source)
    if too_many:
        raise StudyErrors(too_many)
    from studyc.spec.semantics import check_study

    errors = check_study(study, source)
    if errors:
        raise StudyErrors(errors)
    return LoadedStudy(study, source, path, profile)


def _too_many_arms(study: Study, source: Source) -> list[StudyError]:
    """Sweeps are counted before they are expanded: a 10^6-point grid is refused at once."""
    most, total = limit("STUDYC_MAX_ARMS"), 0
    for family, arm in study.arms.items():
        points = 1
        for values in (arm.grid or {}).values():
            points *= max(len(values), 1)
        if arm.zip_:
            points *= max((len(v) for v in arm.zip_.values()), default=1)
        total += points
        if total > most:
            where = ("arms", family, "grid" if arm.grid else "zip") if arm.grid or arm.zip_ else ("arms", family)
            return [source.error(where, f"the arms expand to more than {most} arms ({family}: {points} sweep points)",
                                 "sweep fewer values, or screen in stages; " + raise_hint("STUDYC_MAX_ARMS"),
                                 key=True)]
    return []


def load(path: str | Path, profile: str | None = None, text: str | None = None) -> LoadedStudy:
    """Read, overlay ``profile``, validate. Raises StudyErrors listing every problem."""
    source = read_source(path, text)
    if profile is not None:
        source = with_profile(source, profile)
    return validate_source(source, Path(path), profile)


def validate_file(path: str | Path) -> list[StudyError]:
    """Every problem in a file, in the study and in each of its profiles (parsed once)."""
    try:
        source = read_source(path)
        loaded = validate_source(source, Path(path), None)
    except StudyErrors as exc:
        return exc.errors
    errors: list[StudyError] = []
    seen = set()
    for name in loaded.study.profiles:
        try:
            validate_source(with_profile(source, name), Path(path), name)
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
