"""The expression language shared by checks, gates, tiers, decisions, derived metrics,
stop rules and recovery edits.

A small restricted grammar, parsed by hand (never ``eval``): numbers, dotted names,
arithmetic, comparisons (chainable), ``and``/``or``/``not`` and a fixed set of functions.
Every node keeps its column so errors can point inside the expression.

    expr    := or
    or      := and ('or' and)*
    and     := not ('and' not)*
    not     := 'not' not | compare
    compare := sum (CMP sum)*
    sum     := term (('+'|'-') term)*
    term    := unary (('*'|'/'|'//'|'%') unary)*
    unary   := '-' unary | power
    power   := primary ('**' unary)?
    primary := NUMBER | 'true' | 'false' | NAME ('.' NAME)* | NAME '(' args ')' | '(' expr ')'
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from enum import Enum
from typing import Callable, Sequence

from studyc.errors import did_you_mean


class ExprError(Exception):
    """A problem at column ``col`` (0-based) of an expression."""

    def __init__(self, message: str, col: int, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.col = col
        self.hint = hint


# ---------------------------------------------------------------- tokens

_NUMBER = re.compile(r"(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_NAME = re.compile(r"[A-Za-z0-9_]+")
_OPS = ("**", "//", "<=", ">=", "==", "!=", "≤", "≥", "≠", "<", ">", "+", "-", "*", "/", "%", "(", ")", ",", ".", "=")
_UNICODE_OPS = {"≤": "<=", "≥": ">=", "≠": "!="}
KEYWORDS = {"and", "or", "not", "true", "false"}
COMPARISONS = ("<=", ">=", "==", "!=", "<", ">")


@dataclass(frozen=True)
class Token:
    kind: str  # name, num, op, end
    text: str
    col: int


def tokenize(text: str) -> list[Token]:
    """Split into tokens. A name may start with digits (arm names such as ``2a_32tok``):
    a number immediately followed by a letter or underscore is read as a name."""
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        ch = text[pos]
        if ch.isspace():
            pos += 1
            continue
        number = _NUMBER.match(text, pos)
        if number and not (number.end() < len(text) and (text[number.end()].isalpha() or text[number.end()] == "_")):
            tokens.append(Token("num", number.group(), pos))
            pos = number.end()
            continue
        name = _NAME.match(text, pos)
        if name and (ch.isalpha() or ch == "_" or ch.isdigit()):
            if "." in (number.group() if number else ""):
                raise ExprError(f"unexpected {text[pos:name.end() + 1]!r}: a name cannot contain '.' here", pos)
            tokens.append(Token("name", name.group(), pos))
            pos = name.end()
            continue
        op = next((o for o in _OPS if text.startswith(o, pos)), None)
        if op is None:
            hint = "text in quotes is not part of the language" if ch in "'\"" else None
            raise ExprError(f"unexpected character {ch!r}", pos, hint)
        tokens.append(Token("op", _UNICODE_OPS.get(op, op), pos))
        pos += len(op)
    tokens.append(Token("end", "", len(text)))
    return tokens


# ---------------------------------------------------------------- syntax tree
# Positions are excluded from equality so that printed-then-parsed trees compare equal.


@dataclass(frozen=True)
class Num:
    value: float
    col: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Bool:
    value: bool
    col: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Ref:
    parts: tuple[str, ...]
    col: int = field(default=0, compare=False)

    @property
    def dotted(self) -> str:
        return ".".join(self.parts)


@dataclass(frozen=True)
class Unary:
    op: str  # '-' or 'not'
    operand: "Node"
    col: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Binary:
    op: str  # + - * / // % ** and or
    left: "Node"
    right: "Node"
    col: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Compare:
    ops: tuple[str, ...]
    operands: tuple["Node", ...]
    col: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Call:
    func: str
    args: tuple["Node", ...]
    kwargs: tuple[tuple[str, "Node"], ...] = ()
    col: int = field(default=0, compare=False)


Node = Num | Bool | Ref | Unary | Binary | Compare | Call


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def take(self) -> Token:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def accept(self, text: str) -> Token | None:
        if self.tok.text == text and self.tok.kind in ("op", "name"):
            return self.take()
        return None

    def expect(self, text: str, what: str) -> Token:
        tok = self.accept(text)
        if tok is None:
            raise ExprError(f"expected {what}, found {self._describe(self.tok)}", self.tok.col)
        return tok

    @staticmethod
    def _describe(tok: Token) -> str:
        return "end of expression" if tok.kind == "end" else repr(tok.text)

    def parse(self) -> Node:
        if self.tok.kind == "end":
            raise ExprError("empty expression", 0, "write a condition such as `arm.metric <= 0.06`")
        node = self.or_()
        if self.tok.kind != "end":
            hint = "use `and` / `or` to combine conditions" if self.tok.kind == "name" else None
            raise ExprError(f"unexpected {self._describe(self.tok)}", self.tok.col, hint)
        return node

    def or_(self) -> Node:
        node = self.and_()
        while (tok := self.accept("or")) is not None:
            node = Binary("or", node, self.and_(), tok.col)
        return node

    def and_(self) -> Node:
        node = self.not_()
        while (tok := self.accept("and")) is not None:
            node = Binary("and", node, self.not_(), tok.col)
        return node

    def not_(self) -> Node:
        if (tok := self.accept("not")) is not None:
            return Unary("not", self.not_(), tok.col)
        return self.compare()

    def compare(self) -> Node:
        first = self.sum_()
        ops, operands = [], [first]
        while self.tok.kind == "op" and self.tok.text in COMPARISONS:
            ops.append(self.take().text)
            operands.append(self.sum_())
        if self.tok.kind == "op" and self.tok.text == "=":
            raise ExprError("'=' is not a comparison", self.tok.col, "use '==' to compare")
        if not ops:
            return first
        return Compare(tuple(ops), tuple(operands), _col(first))

    def sum_(self) -> Node:
        node = self.term()
        while self.tok.kind == "op" and self.tok.text in ("+", "-"):
            tok = self.take()
            node = Binary(tok.text, node, self.term(), tok.col)
        return node

    def term(self) -> Node:
        node = self.unary()
        while self.tok.kind == "op" and self.tok.text in ("*", "/", "//", "%"):
            tok = self.take()
            node = Binary(tok.text, node, self.unary(), tok.col)
        return node

    def unary(self) -> Node:
        if self.tok.kind == "op" and self.tok.text in ("-", "+"):
            tok = self.take()
            operand = self.unary()
            return operand if tok.text == "+" else Unary("-", operand, tok.col)
        return self.power()

    def power(self) -> Node:
        node = self.primary()
        if self.tok.kind == "op" and self.tok.text == "**":
            tok = self.take()
            node = Binary("**", node, self.unary(), tok.col)
        return node

    def primary(self) -> Node:
        tok = self.tok
        if tok.kind == "num":
            self.take()
            return Num(float(tok.text), tok.col)
        if tok.kind == "name":
            if tok.text in ("true", "false"):
                self.take()
                return Bool(tok.text == "true", tok.col)
            if tok.text in KEYWORDS:
                raise ExprError(f"'{tok.text}' needs a value before it", tok.col)
            self.take()
            if self.tok.text == "(" and self.tok.kind == "op":
                return self.call(tok)
            parts = [tok.text]
            while self.accept(".") is not None:
                part = self.tok
                if part.kind != "name" or part.text in KEYWORDS:
                    raise ExprError(f"expected a name after '.', found {self._describe(part)}", part.col)
                parts.append(self.take().text)
            return Ref(tuple(parts), tok.col)
        if self.accept("(") is not None:
            node = self.or_()
            self.expect(")", "')'")
            return node
        raise ExprError(f"expected a value, found {self._describe(tok)}", tok.col)

    def call(self, name: Token) -> Node:
        self.expect("(", "'('")
        args: list[Node] = []
        kwargs: list[tuple[str, Node]] = []
        while not (self.tok.kind == "op" and self.tok.text == ")"):
            if self.tok.kind == "name" and self.tokens[self.i + 1].text == "=":
                key = self.take().text
                self.take()
                kwargs.append((key, self.or_()))
            elif kwargs:
                raise ExprError("positional argument after a keyword argument", self.tok.col)
            else:
                args.append(self.or_())
            if self.accept(",") is None:
                break
        self.expect(")", "')' to close the call")
        return Call(name.text, tuple(args), tuple(kwargs), name.col)


def _col(node: Node) -> int:
    if isinstance(node, (Binary,)):
        return _col(node.left)
    if isinstance(node, Compare):
        return _col(node.operands[0])
    return node.col


def parse(text: str) -> Node:
    """Parse an expression, raising ExprError with the column of the problem."""
    return _Parser(str(text)).parse()


# ---------------------------------------------------------------- printing

_PRECEDENCE = {"or": 1, "and": 2, "not": 3, "cmp": 4, "+": 5, "-": 5, "*": 6, "/": 6, "//": 6, "%": 6, "neg": 7, "**": 8}


def _prec(node: Node) -> int:
    if isinstance(node, Binary):
        return _PRECEDENCE[node.op]
    if isinstance(node, Compare):
        return _PRECEDENCE["cmp"]
    if isinstance(node, Unary):
        return _PRECEDENCE["not" if node.op == "not" else "neg"]
    return 9


def _num(value: float) -> str:
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def to_source(node: Node) -> str:
    """Print an expression so that parsing it gives the same tree back."""

    def wrap(child: Node, min_prec: int) -> str:
        text = to_source(child)
        return f"({text})" if _prec(child) < min_prec else text

    if isinstance(node, Num):
        return _num(node.value)
    if isinstance(node, Bool):
        return "true" if node.value else "false"
    if isinstance(node, Ref):
        return node.dotted
    if isinstance(node, Unary):
        if node.op == "not":
            return "not " + wrap(node.operand, _PRECEDENCE["not"])
        return "-" + wrap(node.operand, _PRECEDENCE["neg"])
    if isinstance(node, Binary):
        p = _PRECEDENCE[node.op]
        if node.op == "**":  # right-associative; its left side binds tighter than unary minus
            return f"{wrap(node.left, p + 1)} ** {wrap(node.right, _PRECEDENCE['neg'])}"
        return f"{wrap(node.left, p)} {node.op} {wrap(node.right, p + 1)}"
    if isinstance(node, Compare):
        p = _PRECEDENCE["cmp"] + 1
        text = wrap(node.operands[0], p)
        for op, operand in zip(node.ops, node.operands[1:]):
            text += f" {op} {wrap(operand, p)}"
        return text
    if isinstance(node, Call):
        parts = [to_source(a) for a in node.args] + [f"{k}={to_source(v)}" for k, v in node.kwargs]
        return f"{node.func}({', '.join(parts)})"
    raise TypeError(node)


def walk(node: Node):
    """Every node of the tree, parents first."""
    yield node
    if isinstance(node, Unary):
        yield from walk(node.operand)
    elif isinstance(node, Binary):
        yield from walk(node.left)
        yield from walk(node.right)
    elif isinstance(node, Compare):
        for operand in node.operands:
            yield from walk(operand)
    elif isinstance(node, Call):
        for arg in node.args:
            yield from walk(arg)
        for _, value in node.kwargs:
            yield from walk(value)


def refs(node: Node) -> list[Ref]:
    return [n for n in walk(node) if isinstance(n, Ref)]


def named(node: Node) -> list[tuple[str, Ref]]:
    """Arguments that name an arm or stage (``failed(x)``), with their function."""
    return [(n.func, a) for n in walk(node) if isinstance(n, Call) and n.func in FUNCTIONS
            for a, p in zip(n.args, FUNCTIONS[n.func][0] if not isinstance(FUNCTIONS[n.func][0], Type) else ())
            if p == Type.NAME and isinstance(a, Ref)]


# ---------------------------------------------------------------- types


class Type(str, Enum):
    NUM = "number"
    BOOL = "condition"
    NAME = "name"  # an arm or stage named bare, e.g. failed(baseline); which names exist is the caller's to check


# name -> (positional argument types or None for variadic NUM/BOOL, keyword names, result)
FUNCTIONS: dict[str, tuple[Sequence[Type] | Type, tuple[str, ...], Type]] = {
    "within": ((Type.NUM, Type.NUM), ("rel", "abs"), Type.BOOL),
    "abs": ((Type.NUM,), (), Type.NUM),
    "min": (Type.NUM, (), Type.NUM),
    "max": (Type.NUM, (), Type.NUM),
    "isfinite": ((Type.NUM,), (), Type.BOOL),
    "all": (Type.BOOL, (), Type.BOOL),
    "any": (Type.BOOL, (), Type.BOOL),
    "count": (Type.BOOL, (), Type.NUM),
    "failed": ((Type.NAME,), (), Type.BOOL),  # any run of an arm or stage ended failed, after its retries
}

Resolver = Callable[[Ref], Type]


def check(node: Node, resolve: Resolver, want: Type | None = None) -> Type:
    """Type-check ``node``; ``resolve`` gives each reference's type or raises ExprError."""
    got = _check(node, resolve)
    if want is not None and got != want:
        hint = "compare it with a threshold, e.g. `... <= 0.06`" if want == Type.BOOL else None
        raise ExprError(f"this expression is a {got.value}, but a {want.value} is needed here", _col(node), hint)
    return got


def _expect(node: Node, resolve: Resolver, want: Type, context: str) -> None:
    got = _check(node, resolve)
    if got != want:
        raise ExprError(f"{context} needs a {want.value}, got a {got.value}", _col(node))


def _check(node: Node, resolve: Resolver) -> Type:
    if isinstance(node, Num):
        return Type.NUM
    if isinstance(node, Bool):
        return Type.BOOL
    if isinstance(node, Ref):
        return resolve(node)
    if isinstance(node, Unary):
        want = Type.BOOL if node.op == "not" else Type.NUM
        _expect(node.operand, resolve, want, f"'{node.op}'")
        return want
    if isinstance(node, Binary):
        want = Type.BOOL if node.op in ("and", "or") else Type.NUM
        _expect(node.left, resolve, want, f"'{node.op}'")
        _expect(node.right, resolve, want, f"'{node.op}'")
        return want
    if isinstance(node, Compare):
        for operand in node.operands:
            _expect(operand, resolve, Type.NUM, "a comparison")
        return Type.BOOL
    if isinstance(node, Call):
        if node.func not in FUNCTIONS:
            raise ExprError(f"unknown function '{node.func}'", node.col, did_you_mean(node.func, FUNCTIONS))
        params, keywords, result = FUNCTIONS[node.func]
        if isinstance(params, Type):
            if not node.args:
                raise ExprError(f"{node.func}() needs at least one argument", node.col)
            for arg in node.args:
                _expect(arg, resolve, params, f"{node.func}()")
        else:
            if len(node.args) != len(params):
                raise ExprError(f"{node.func}() takes {len(params)} arguments, got {len(node.args)}", node.col)
            for arg, param in zip(node.args, params):
                if param == Type.NAME:
                    if not (isinstance(arg, Ref) and len(arg.parts) == 1):
                        raise ExprError(f"{node.func}() takes the name of an arm or stage", _col(arg),
                                        f"e.g. {node.func}(baseline)")
                    continue
                _expect(arg, resolve, param, f"{node.func}()")
        for key, value in node.kwargs:
            if key not in keywords:
                raise ExprError(f"{node.func}() has no option '{key}'", node.col, did_you_mean(key, keywords))
            _expect(value, resolve, Type.NUM, f"{node.func}({key}=...)")
        if node.func == "within" and len(node.kwargs) != 1:
            raise ExprError("within() needs exactly one of rel= or abs=", node.col, "e.g. within(a.x, b.x, rel=0.05)")
        return result
    raise TypeError(node)


# ---------------------------------------------------------------- evaluation over plain numbers


def evaluate(node: Node, lookup: Callable[[Ref], float | bool]) -> float | bool:
    """Evaluate over plain values (one run's metrics, a config): Python semantics, NaN kept."""

    def ev(n: Node):
        if isinstance(n, (Num, Bool)):
            return n.value
        if isinstance(n, Ref):
            return lookup(n)
        if isinstance(n, Unary):
            return (not ev(n.operand)) if n.op == "not" else -ev(n.operand)
        if isinstance(n, Binary):
            if n.op == "and":
                return bool(ev(n.left)) and bool(ev(n.right))
            if n.op == "or":
                return bool(ev(n.left)) or bool(ev(n.right))
            return _arith(n.op, ev(n.left), ev(n.right))
        if isinstance(n, Compare):
            values = [ev(o) for o in n.operands]
            return all(_compare(op, a, b) for op, a, b in zip(n.ops, values, values[1:]))
        if isinstance(n, Call):
            args = [ev(a) for a in n.args]
            kwargs = {k: ev(v) for k, v in n.kwargs}
            return _call(n.func, args, kwargs)
        raise TypeError(n)

    return ev(node)


def _arith(op: str, a: float, b: float) -> float:
    try:
        if op == "+":
            return a + b
        if op == "-":
            return a - b
        if op == "*":
            return a * b
        if op == "/":
            return a / b
        if op == "//":
            return a // b
        if op == "%":
            return a % b
        if op == "**":
            return a**b
    except (ZeroDivisionError, OverflowError):
        return math.nan
    raise ValueError(op)


def _compare(op: str, a: float, b: float) -> bool:
    return {
        "<=": a <= b,
        ">=": a >= b,
        "<": a < b,
        ">": a > b,
        "==": a == b,
        "!=": a != b,
    }[op]


def _call(func: str, args: list, kwargs: dict):
    if func == "within":
        a, b = args
        if "rel" in kwargs:
            return b != 0 and abs((a - b) / b) <= kwargs["rel"]
        return abs(a - b) <= kwargs["abs"]
    if func == "abs":
        return abs(args[0])
    if func == "min":
        return min(args)
    if func == "max":
        return max(args)
    if func == "isfinite":
        return math.isfinite(args[0])
    if func == "all":
        return all(args)
    if func == "any":
        return any(args)
    if func == "count":
        return float(sum(bool(a) for a in args))
    raise ValueError(func)
