"""YAML text -> a tree of plain containers that remember where each node is.

libyaml (through PyYAML's C parser) composes the document, which is ~30x faster than a
pure-Python round-trip parser and keeps `studyc validate` quick; scalars are resolved
with the YAML 1.2 core schema (``yes``, ``on`` and ``1:30`` stay text, as in YAML 1.2).
Duplicate keys are refused, anchors, aliases and ``<<`` merge keys work. Positions are
0-based (line, col), as the parser reports them.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from studyc.spec.limits import limit, raise_hint

_MERGE = "tag:yaml.org,2002:merge"
_BOOL = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_NULL = re.compile(r"^(?:~|null|Null|NULL|)$")
_INT = re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$")
_FLOAT = re.compile(r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$")


# JSON escapes characters beyond U+FFFF as surrogate pairs, which libyaml refuses.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _core_schema(base: type) -> type:
    """``base`` (a PyYAML loader) resolving plain scalars by the YAML 1.2 core schema."""
    loader = type(f"Core{base.__name__}", (base,), {"yaml_implicit_resolvers": {}})
    for tag, regexp, first in (
        ("tag:yaml.org,2002:bool", _BOOL, "tTfF"),
        ("tag:yaml.org,2002:null", _NULL, ["~", "n", "N", ""]),
        ("tag:yaml.org,2002:int", _INT, "-+0123456789"),
        ("tag:yaml.org,2002:float", _FLOAT, "-+0123456789."),
        (_MERGE, re.compile(r"^<<$"), "<"),
    ):
        loader.add_implicit_resolver(tag, regexp, list(first))
    return loader


PureLoader = _core_schema(yaml.SafeLoader)
FastLoader = _core_schema(yaml.CSafeLoader) if hasattr(yaml, "CSafeLoader") else PureLoader


class PMap(dict):
    """A mapping with the position of itself (``at``), of each key and of each value."""

    def __init__(self, at: tuple[int, int]):
        super().__init__()
        self.at = at
        self.key_at: dict[Any, tuple[int, int]] = {}
        self.value_at: dict[Any, tuple[int, int]] = {}

    def put(self, key: Any, value: Any, key_at: tuple[int, int], value_at: tuple[int, int]) -> None:
        self[key] = value
        self.key_at[key] = key_at
        self.value_at[key] = value_at


class PSeq(list):
    """A sequence with its position and each item's."""

    def __init__(self, at: tuple[int, int]):
        super().__init__()
        self.at = at
        self.item_at: list[tuple[int, int]] = []


class PStr(str):
    """Text with its quoting style: '"', "'", '|', '>' or None (plain)."""

    style: str | None = None


class StructureError(yaml.MarkedYAMLError):
    """Valid YAML that no study can be: a duplicate key, a list as a key, a recursive alias."""

    def __init__(self, problem: str, mark: Any, hint: str):
        super().__init__(None, None, problem, mark)
        self.hint = hint


def _at(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line, node.start_mark.column


def _scalar(node: yaml.ScalarNode) -> Any:
    value, tag = node.value, node.tag
    if tag.endswith(":null"):
        return None
    if tag.endswith(":bool"):
        return value.lower() == "true"
    try:
        if tag.endswith(":int"):
            if value.startswith(("0o", "0x")):
                return int(value[2:], 8 if value[1] == "o" else 16)
            return int(value)
        if tag.endswith(":float"):
            lowered = value.lower().lstrip("+")
            if lowered.endswith((".inf", ".nan")):
                return float(lowered.replace(".", ""))
            return float(value)
    except ValueError:  # an explicit !!int or !!float on text, or a number too long to hold
        raise StructureError(f"'{value[:40]}' is not a {tag.rsplit(':', 1)[-1]}", node.start_mark,
                             "remove the tag or write a number") from None
    if _SURROGATE.search(value):  # a pair from the pure parser
        value = value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    text = PStr(value)
    text.style = node.style or None
    return text


def _build(node: yaml.Node, memo: dict[int, Any], open_: set[int]) -> Any:
    if id(node) in open_:
        raise StructureError("an alias refers to the node that contains it", node.start_mark,
                             "a study cannot contain itself: copy the values instead")
    if id(node) in memo:  # an alias: the anchored value itself
        return memo[id(node)]
    open_.add(id(node))
    try:
        return _build_new(node, memo, open_)
    finally:
        open_.discard(id(node))


def _build_new(node: yaml.Node, memo: dict[int, Any], open_: set[int]) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return _scalar(node)
    if isinstance(node, yaml.SequenceNode):
        seq = memo[id(node)] = PSeq(_at(node))
        for item in node.value:
            seq.append(_build(item, memo, open_))
            seq.item_at.append(_at(item))
        return seq
    out = memo[id(node)] = PMap(_at(node))
    merged: list[PMap] = []
    for key_node, value_node in node.value:
        if key_node.tag == _MERGE:
            sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
            merged += [m for m in (_build(s, memo, open_) for s in sources) if isinstance(m, PMap)]
            continue
        if not isinstance(key_node, yaml.ScalarNode):
            raise StructureError("a key must be plain text, not a list or mapping", key_node.start_mark,
                                 "write the key as a name, e.g. `lr:`")
        key = _scalar(key_node)
        key = str(key) if isinstance(key, PStr) else key
        if key in out:
            raise StructureError(f"duplicate key '{key}'", key_node.start_mark,
                                 "each key may appear once per mapping; merge or rename one")
        out.put(key, _build(value_node, memo, open_), _at(key_node), _at(value_node))
    for source in merged:  # explicit keys win over merged ones; earlier merges over later
        for key, value in source.items():
            if key not in out:
                out.put(key, value, source.key_at[key], source.value_at[key])
    return out


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return node.value
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def check_size(node: yaml.Node, max_nodes: int, max_depth: int) -> None:
    """Refuse a document that expands (through aliases) to more than ``max_nodes`` nodes
    or nests deeper than ``max_depth``, before anything copies or recurses into it. One
    pass over the composed graph, each node once (an alias is a second reference)."""
    size: dict[int, int] = {}
    height: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(node, False)]
    while stack:
        current, done = stack.pop()
        key = id(current)
        if done:
            kids = [k for k in _children(current) if id(k) in size]  # a node inside itself: _build says so
            size[key] = 1 + sum(size[id(k)] for k in kids)
            height[key] = 1 + max((height[id(k)] for k in kids), default=0)
            if size[key] > max_nodes:
                raise StructureError(f"this value expands to more than {max_nodes} nodes (aliases repeat what they "
                                     "name)", current.start_mark, "a study this large is a mistake or an alias bomb; "
                                     + raise_hint("STUDYC_MAX_YAML_NODES"))
            continue
        if key in size or key in height:
            continue
        height[key] = 0  # open: marks a cycle
        stack.append((current, True))
        stack += [(k, False) for k in _children(current) if id(k) not in height]
    if height[id(node)] > max_depth:
        current = node
        for _ in range(max_depth):  # down the deepest path to the first node past the limit
            current = max(_children(current), key=lambda k: height.get(id(k), 0))
        raise StructureError(f"nested more than {max_depth} levels deep", current.start_mark,
                             "flatten the structure; " + raise_hint("STUDYC_MAX_DEPTH"))


def parse(text: str) -> Any:
    """The document's tree (None when empty). Raises yaml.YAMLError (with marks)."""
    loader = (PureLoader if _SURROGATE_ESCAPE.search(text) else FastLoader)(text)
    try:
        node = loader.get_single_node()
    finally:
        loader.dispose()
    if node is None:
        return None
    check_size(node, limit("STUDYC_MAX_YAML_NODES"), limit("STUDYC_MAX_DEPTH"))
    return _build(node, {}, set())
