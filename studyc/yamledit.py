"""Edit a YAML file's values and keep everything else byte for byte: comments, blank
lines, quoting, flow or block style, key order.

ruamel.yaml's round-trip mode changes the document and dumps it; only the lines of the
entries that changed are taken from the dump, the rest of the file is kept as it was
(ruamel re-indents and re-spaces what it dumps, which would touch unrelated lines). Values
are written so that PyYAML (YAML 1.1, the study loader) reads them back the same. ruamel
is imported only by the functions that need it (`studyc promote`).
"""

from __future__ import annotations

import io
import json
import math
from decimal import Decimal
from typing import Any

from studyc.errors import RunError


def load(text: str) -> Any:
    """The round-trip document (CommentedMap, ...) of ``text``; None when empty."""
    return _yaml((2, 4, 2)).load(text)  # indentation matters only when dumping


def changes(old: Any, new: dict[str, Any], prefix: str = "") -> list[dict[str, Any]]:
    """Leaf by leaf, what ``new`` changes in the mapping ``old`` (nested mappings merge)."""
    out = []
    for key, value in new.items():
        path = f"{prefix}{key}"
        present = isinstance(old, dict) and key in old
        current = old[key] if present else None
        if isinstance(value, dict) and isinstance(current, dict):
            out += changes(current, value, f"{path}.")
        elif not present:
            out.append({"key": path, "old": None, "new": value, "added": True})
        elif plain(current) != value:
            out.append({"key": path, "old": plain(current), "new": value, "added": False})
    return out


def plain(node: Any) -> Any:
    """ruamel's round-trip nodes (CommentedMap, ScalarFloat, ...) as plain Python values."""
    if isinstance(node, dict):
        return {str(k): plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [plain(v) for v in node]
    if isinstance(node, bool) or node is None:
        return node
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    if isinstance(node, str):
        return str(node)
    return node


def _like(old: Any, new: Any) -> Any:
    """``new`` in the style of the node it replaces: a flow list stays a flow list, a
    quoted string stays quoted, 3.0e-4 becomes 3.5e-4 (not 0.00035)."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    if isinstance(new, list):
        olds = old if isinstance(old, list) else []
        seq = CommentedSeq(_like(olds[i] if i < len(olds) else None, v) for i, v in enumerate(new))
        if isinstance(old, CommentedSeq) and old.fa.flow_style():
            seq.fa.set_flow_style()
        return seq
    if isinstance(new, dict):
        olds = old if isinstance(old, dict) else {}
        mapping = CommentedMap((k, _like(olds.get(k), v)) for k, v in new.items())
        if isinstance(old, CommentedMap) and old.fa.flow_style():
            mapping.fa.set_flow_style()
        return mapping
    return _scalar(old, new)


def _scalar(old: Any, new: Any) -> Any:
    """A scalar that the study loader (PyYAML, YAML 1.1) reads back as the same value:
    ruamel writes YAML 1.2, where 1e-05 is a float and `on` a string, but not in 1.1."""
    import yaml
    from ruamel.yaml import YAML
    from ruamel.yaml.scalarstring import DoubleQuotedScalarString, SingleQuotedScalarString

    if isinstance(new, float) and math.isfinite(new):
        return YAML().load(float_text(new, getattr(old, "_exp", None)))  # a ScalarFloat, dumped as written
    if isinstance(new, str):
        if isinstance(old, (DoubleQuotedScalarString, SingleQuotedScalarString)):
            return type(old)(new)
        try:
            plain = yaml.safe_load(new)
        except yaml.YAMLError:
            plain = None
        return new if plain == new else DoubleQuotedScalarString(new)
    return new


def float_text(value: float, exp: str | None) -> str:
    """``value`` as YAML 1.1 and 1.2 both read a float: fixed, or with an exponent that
    has a mantissa dot and a sign (3.5e-4, 1.0e+16) when the old value (``exp``: its 'e'
    or 'E') or the shortest repr uses one."""
    text = repr(value)
    if value == 0 or exp is None and "e" not in text:
        return text
    sign, digits, exponent = Decimal(text).as_tuple()
    power = len(digits) - 1 + int(exponent)
    mantissa = f"{digits[0]}." + ("".join(map(str, digits[1:])).rstrip("0") or "0")
    return ("-" if sign else "") + mantissa + (exp or "e") + f"{power:+d}"


def _assign(target: Any, values: dict[str, Any]) -> list[str]:
    """Set ``values`` into the round-trip mapping ``target`` in place (nested mappings
    merge, so their comments stay); returns the top-level keys that changed."""
    from ruamel.yaml.comments import CommentedMap

    touched = []
    for key, value in values.items():
        current = target.get(key)
        if isinstance(value, dict) and isinstance(current, CommentedMap):
            if _assign(current, value):
                touched.append(key)
        elif key not in target or plain(current) != value:
            target[key] = _like(current, value)
            touched.append(key)
    return touched


def _yaml(indent: tuple[int, int, int]):
    from ruamel.yaml import YAML

    yaml = YAML()  # round-trip: comments, key order, quotes and flow styles are kept
    yaml.preserve_quotes = True
    yaml.width = 4096  # never fold a long line the file wrote on one line
    mapping, sequence, offset = indent
    yaml.indent(mapping=mapping, sequence=sequence, offset=offset)
    return yaml


def _indent(doc: Any, at: tuple[str, ...]) -> tuple[int, int, int]:
    """The file's own indentation (mapping, sequence, dash offset), so the lines taken
    from the dump line up with the ones kept: the mapping's from the mapping being
    edited (or the first nested one), the dash's from the first block sequence."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    def block(node: Any) -> bool:
        return isinstance(node, (CommentedMap, CommentedSeq)) and bool(node) and not node.fa.flow_style()

    def nested(node: Any) -> list[tuple[Any, int]]:  # (block child, column of its key)
        return [(v, node.lc.key(k)[1]) for k, v in node.items() if block(v)] if isinstance(node, CommentedMap) else []

    mapping, offset = 2, 2
    parent, col = doc, None
    for key in at:  # the deepest block mapping on the way to the one edited
        child = parent.get(key) if isinstance(parent, CommentedMap) else None
        if not (isinstance(child, CommentedMap) and block(child)):
            break
        parent, col = child, parent.lc.key(key)[1]
    if col is None:
        parent, col = next(((v, c) for v, c in nested(doc) if isinstance(v, CommentedMap)), (None, None))
    if parent is not None and col is not None:
        mapping = parent.lc.key(next(iter(parent)))[1] - col
    todo = nested(doc)
    while todo:  # breadth first: the first block sequence under a key
        node, col = todo.pop(0)
        if isinstance(node, CommentedSeq):
            offset = max(node.lc.item(0)[1] - 2 - col, 0)
            break
        todo += nested(node)
    return mapping, offset + 2, offset


def _node(doc: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        doc = doc[key]
    return doc


def _end_line(doc: Any, path: tuple[str, ...], lines: int) -> int:
    """The line (0-based) where the entry at ``path`` ends: the next key at its level or
    above, or the end of the file."""
    for depth in range(len(path), 0, -1):
        parent = _node(doc, path[:depth - 1])
        keys = list(parent)
        i = keys.index(path[depth - 1])
        if i + 1 < len(keys):
            return parent.lc.key(keys[i + 1])[0]
    return lines


def _span(doc: Any, path: tuple[str, ...], lines: int) -> tuple[int, int]:
    parent = _node(doc, path[:-1])
    return parent.lc.key(path[-1])[0], _end_line(doc, path, lines)


def edit_yaml(text: str, at: tuple[str, ...], values: dict[str, Any], file: str) -> str:
    """``text`` with ``values`` set into the mapping at ``at``; only the lines of the
    entries that change (and of added ones) differ from ``text``."""
    from ruamel.yaml.comments import CommentedMap
    from ruamel.yaml.error import YAMLError

    try:
        doc = load(text)
    except YAMLError as exc:
        raise RunError(f"{file} is not YAML that can be edited: {str(exc).splitlines()[0]}", "fix the file, then "
                       "promote again") from None
    doc = CommentedMap() if doc is None else doc
    if not isinstance(doc, CommentedMap):
        raise RunError(f"{file} is not a mapping of config keys", "a config file is a YAML mapping, e.g. `lr: 0.001`")
    yaml = _yaml(_indent(doc, at))
    # The deepest mapping on the way that exists; what is missing below it is added to it.
    scope, node = (), doc
    for i, key in enumerate(at):
        child = node.get(key)
        if child is None:
            for missing in reversed(at[i:]):
                values = {missing: values}
            break
        if not isinstance(child, CommentedMap):
            raise RunError(f"{file}: '{'.'.join(at[:i + 1])}' is not a mapping", "make it a mapping of config keys")
        scope, node = scope + (key,), child
    touched = _assign(node, values)
    if not touched:
        return text
    out = io.StringIO()
    yaml.dump(doc, out)
    if not text.strip():
        return out.getvalue()
    return _splice(text, out.getvalue(), scope, touched, yaml, file)


def _splice(text: str, dumped: str, scope: tuple[str, ...], touched: list[str], yaml: Any, file: str) -> str:
    """Take from ``dumped`` only the entries of ``scope`` that changed; keep every other
    line of ``text``. The result must read back as the dumped document."""
    old_doc, new_doc = yaml.load(text), yaml.load(dumped)
    old_lines, new_lines = text.splitlines(keepends=True), dumped.splitlines(keepends=True)
    mapping = _node(old_doc, scope)
    if mapping.fa.flow_style() or not mapping:
        # One flow mapping ({a: 1, b: 2}) or an empty one: replace its whole entry.
        spans = [(_span(old_doc, scope, len(old_lines)), _span(new_doc, scope, len(new_lines)))] if scope else []
    else:
        keys = list(mapping)
        last = keys[-1]
        spans = []
        for key in touched:
            if key in mapping and key != last:
                spans.append((_span(old_doc, scope + (key,), len(old_lines)),
                               _span(new_doc, scope + (key,), len(new_lines))))
        if last in touched or any(k not in mapping for k in touched):
            # Added keys follow the last one: take the last entry through the mapping's end.
            old = _span(old_doc, scope + (last,), len(old_lines))
            start = _node(new_doc, scope).lc.key(last)[0]
            end = _end_line(new_doc, scope, len(new_lines)) if scope else len(new_lines)
            spans.append((old, (start, end)))
    if not spans:
        return dumped
    result = list(old_lines)
    for (o_start, o_end), (n_start, n_end) in sorted(spans, reverse=True):
        result[o_start:o_end] = new_lines[n_start:n_end]
    spliced = "".join(result)
    if plain(yaml.load(spliced)) != plain(new_doc):
        raise RunError(f"could not edit {file} while keeping its layout (an unusual indentation or a value that "
                       "spans several lines)", "promote with --to FILE into a separate config file, or set the "
                       "values by hand: " + json.dumps(plain(_node(new_doc, scope)))[:300])
    return spliced
