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

# ASCII only: `\d` and str.isdigit() would read other scripts' digits (Arabic-Indic, fullwidth)
# as numbers, a check that silently means something else than it shows.
_NUMBER = re.compile(r"(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_NAME = re.compile(r"[A-Za-z0-9_]+")
_WORD = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")
_OPS = ("**", "//", "<=", ">=", "==", "!=", "≤", "≥", "≠", "<", ">", "+", "-", "*", "/", "%", "(", ")", ",", ".", "=")
_UNICODE_OPS = {"≤": "<=", "≥": ">=", "≠": "!="}
KEYWORDS = {"and", "or", "not", "true", "false"}
# Input guards: an expression longer than MAX_LENGTH characters, or nesting deeper than
# MAX_DEPTH (parentheses, calls, unary operators, operator chains), is refused with its
# column rather than exhausting Python's stack in the parser or the evaluator.
MAX_LENGTH = 5000
MAX_DEPTH = 200  # levels of the syntax tree (a sum of at most 200 terms)
MAX_NESTING = 50  # parentheses, calls and prefix operators inside each other
COMPARISONS = ("<=", ">=", "==", "!=", "<", ">")


@dataclass(frozen=True)
class Token:
    kind: str  # name, num, op, end
    text: str
    col: int


def tokenize(text: str) -> list[Token]:
    """Split into tokens. A name may start with digits (arm names such as ``2a_32tok``):
    a number immediately followed by a letter or underscore is read as a name."""
    if len(text) > MAX_LENGTH:
        raise ExprError(f"the expression is {len(text)} characters long, more than the {MAX_LENGTH} allowed",
                        MAX_LENGTH, "split it into derived metrics or hypotheses")
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        ch = text[pos]
        if ch.isspace():
            pos += 1
            continue
        number = _NUMBER.match(text, pos)
        if number and not (number.end() < len(text) and text[number.end()] in _WORD):
            tokens.append(Token("num", number.group(), pos))
            pos = number.end()
            continue
        name = _NAME.match(text, pos)
        if name and ch in _WORD:
            if "." in (number.group() if number else ""):
                raise ExprError(f"unexpected {text[pos:name.end() + 1]!r}: a name cannot contain '.' here", pos)
            tokens.append(Token("name", name.group(), pos))
            pos = name.end()
            continue
        op = next((o for o in _OPS if text.startswith(o, pos)), None)
        if op is None:
            hint = ("text in quotes is not part of the language" if ch in "'\"" else
                    "numbers and names are written in ASCII (0-9, A-Z, a-z, _)" if ch.isalnum() else None)
            raise ExprError(f"unexpected character {ch!r}", pos, hint)
        tokens.append(Token("op", _UNICODE_OPS.get(op, op), pos))
        pos += len(op)
    tokens.append(Token("end", "", len(text)))
    return tokens


# ---------------------------------------------------------------- syntax tree
# Positions are excluded from equality so that printed-then-parsed trees compare equal.


class _Leaf:
    depth = 1  # see _Inner


class _Inner:
    """A node over others; ``depth`` (levels below it, itself included) is computed once,
    so the parser can refuse a too-deep tree without walking it."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "depth", 1 + max((c.depth for c in self.children()), default=0))

    def children(self) -> tuple["Node", ...]:
        raise NotImplementedError


@dataclass(frozen=True)
class Num(_Leaf):
    value: float
    col: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Bool(_Leaf):
    value: bool
    col: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Ref(_Leaf):
    parts: tuple[str, ...]
    col: int = field(default=0, compare=False)

    @property
    def dotted(self) -> str:
        return ".".join(self.parts)


@dataclass(frozen=True)
class Unary(_Inner):
    op: str  # '-' or 'not'
    operand: "Node"
    col: int = field(default=0, compare=False)

    def children(self) -> tuple["Node", ...]:
        return (self.operand,)


@dataclass(frozen=True)
class Binary(_Inner):
    op: str  # + - * / // % ** and or
    left: "Node"
    right: "Node"
    col: int = field(default=0, compare=False)

    def children(self) -> tuple["Node", ...]:
        return (self.left, self.right)


@dataclass(frozen=True)
class Compare(_Inner):
    ops: tuple[str, ...]
    operands: tuple["Node", ...]
    col: int = field(default=0, compare=False)

    def children(self) -> tuple["Node", ...]:
        return self.operands


@dataclass(frozen=True)
class Call(_Inner):
    func: str
    args: tuple["Node", ...]
    kwargs: tuple[tuple[str, "Node"], ...] = ()
    col: int = field(default=0, compare=False)

    def children(self) -> tuple["Node", ...]:
        return (*self.args, *(v for _, v in self.kwargs))


Node = Num | Bool | Ref | Unary | Binary | Compare | Call


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0
        self.nesting = 0

    def built(self, node: "Node") -> "Node":
        if node.depth > MAX_DEPTH:
            raise ExprError(f"the expression nests more than {MAX_DEPTH} levels deep here", node.col,
                            "split it into derived metrics, or sum with fewer terms")
        return node

    def enter(self, tok: Token) -> None:
        """One level deeper into parentheses, a call or a prefix operator."""
        self.nesting += 1
        if self.nesting > MAX_NESTING:
            raise ExprError(f"more than {MAX_NESTING} nested parentheses, calls or prefix operators", tok.col,
                            "simplify the expression")

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
            node = self.built(Binary("or", node, self.and_(), tok.col))
        return node

    def and_(self) -> Node:
        node = self.not_()
        while (tok := self.accept("and")) is not None:
            node = self.built(Binary("and", node, self.not_(), tok.col))
        return node

    def not_(self) -> Node:
        if (tok := self.accept("not")) is not None:
            self.enter(tok)
            node = self.built(Unary("not", self.not_(), tok.col))
            self.nesting -= 1
            return node
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
        return self.built(Compare(tuple(ops), tuple(operands), _col(first)))

    def sum_(self) -> Node:
        node = self.term()
        while self.tok.kind == "op" and self.tok.text in ("+", "-"):
            tok = self.take()
            node = self.built(Binary(tok.text, node, self.term(), tok.col))
        return node

    def term(self) -> Node:
        node = self.unary()
        while self.tok.kind == "op" and self.tok.text in ("*", "/", "//", "%"):
            tok = self.take()
            node = self.built(Binary(tok.text, node, self.unary(), tok.col))
        return node

    def unary(self) -> Node:
        if self.tok.kind == "op" and self.tok.text in ("-", "+"):
            tok = self.take()
            self.enter(tok)
            operand = self.unary()
            self.nesting -= 1
            return operand if tok.text == "+" else self.built(Unary("-", operand, tok.col))
        return self.power()

    def power(self) -> Node:
        node = self.primary()
        if self.tok.kind == "op" and self.tok.text == "**":
            tok = self.take()
            self.enter(tok)
            node = self.built(Binary("**", node, self.unary(), tok.col))
            self.nesting -= 1
        return node

    def primary(self) -> Node:
        tok = self.tok
        if tok.kind == "num":
            self.take()
            value = float(tok.text)
            if not math.isfinite(value):
                raise ExprError(f"the number {tok.text} is too large", tok.col,
                                "numbers in checks stay below about 1.8e308")
            return Num(value, tok.col)
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
        if (paren := self.accept("(")) is not None:
            self.enter(paren)
            node = self.or_()
            self.expect(")", "')'")
            self.nesting -= 1
            return node
        raise ExprError(f"expected a value, found {self._describe(tok)}", tok.col)

    def call(self, name: Token) -> Node:
        self.enter(self.expect("(", "'('"))
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
        self.nesting -= 1
        return self.built(Call(name.text, tuple(args), tuple(kwargs), name.col))


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
    if isinstance(node, _Inner):
        for child in node.children():
            yield from walk(child)


def refs(node: Node) -> list[Ref]:
    return [n for n in walk(node) if isinstance(n, Ref)]


def named(node: Node) -> list[tuple[str, Ref]]:
    """Arguments that name an arm or stage (``failed(x)``), with their function."""
    return [(n.func, a) for n in walk(node) if isinstance(n, Call) for a in _name_args(n)]


def _name_args(call: Call) -> list[Ref]:
    """The arguments of this one call that are names, not values."""
    params = FUNCTIONS[call.func][0] if call.func in FUNCTIONS else ()
    return [a for a, p in zip(call.args, () if isinstance(params, Type) else params)
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
    "noworse": ((Type.NUM, Type.NUM), ("margin",), Type.BOOL),
}
# Functions whose meaning needs the study (a metric's goal, intervals): checks only, not
# per-run expressions (stop rules, recovery edits, per-run derived metrics).
CHECK_ONLY = frozenset({"noworse"})

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


# ---------------------------------------------------------------- evaluation


class Domain:
    """What values an expression computes with. The evaluator walks the tree once and
    hands each node's evaluated children to these methods; names are given meaning by
    the ``lookup`` passed to :func:`evaluate`. This base class is plain Python numbers
    and booleans (one run's metrics, a config): NaN is kept, overflow and division by
    zero give NaN."""

    def const(self, node: Num | Bool):
        return node.value

    def neg(self, value, node: Unary):
        return -value

    def not_(self, value, node: Unary):
        return not value

    def logic(self, op: str, left, right, node: Binary):
        return (bool(left) and bool(right)) if op == "and" else (bool(left) or bool(right))

    def arith(self, op: str, left, right, node: Binary):
        return arith(op, left, right)

    def compare(self, node: Compare, values: list):
        return all(_compare(op, a, b) for op, a, b in zip(node.ops, values, values[1:]))

    def call(self, node: Call, args: list, kwargs: dict):
        return _call(node.func, args, kwargs)


FLOATS = Domain()


def evaluate(node: Node, lookup: Callable[[Ref], object], domain: Domain = FLOATS):
    """The value of ``node`` in ``domain``, each name's value given by ``lookup``. The
    recursion is bounded by the parser's MAX_DEPTH."""
    if isinstance(node, (Num, Bool)):
        return domain.const(node)
    if isinstance(node, Ref):
        return lookup(node)
    if isinstance(node, Unary):
        value = evaluate(node.operand, lookup, domain)
        return domain.not_(value, node) if node.op == "not" else domain.neg(value, node)
    if isinstance(node, Binary):
        left, right = evaluate(node.left, lookup, domain), evaluate(node.right, lookup, domain)
        if node.op in ("and", "or"):
            return domain.logic(node.op, left, right, node)
        return domain.arith(node.op, left, right, node)
    if isinstance(node, Compare):
        return domain.compare(node, [evaluate(o, lookup, domain) for o in node.operands])
    if isinstance(node, Call):
        named_args = {id(ref) for ref in _name_args(node)}  # failed(arm): the name itself, not a value
        return domain.call(node, [a if id(a) in named_args else evaluate(a, lookup, domain) for a in node.args],
                           {k: evaluate(v, lookup, domain) for k, v in node.kwargs})
    raise TypeError(node)


def arith(op: str, a: float, b: float) -> float:
    """Python arithmetic on floats, NaN where it would raise (zero division, overflow)."""
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
            value = a**b
            return math.nan if isinstance(value, complex) else value  # a negative number to a fractional power
    except (ZeroDivisionError, OverflowError, ValueError):
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
    raise ValueError(f"{func}() has no meaning over plain numbers")
