import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from studyc.spec import expr as E


@pytest.mark.parametrize("text", [
    "pure_128.nrmse <= 1.05 * u_shaped_128.nrmse",
    "within(pure_128.nrmse, chansep_128.nrmse, rel=0.05)",
    "2a_32tok.peak_acc >= 0.55",
    "loss != loss or loss > 1e3",
    "0.3 <= a.r <= 0.55",
    "not H1 and (H2 or H3)",
    "count(H1, H2, H3) >= 1",
    "-a ** 2 + b // 2 % 3",
])
def test_round_trip_examples(text):
    node = E.parse(text)
    assert E.parse(E.to_source(node)) == node


def test_digit_led_names_and_exponents():
    assert E.parse("2a_32tok.x") == E.Ref(("2a_32tok", "x"))
    assert E.parse("1e3") == E.Num(1000.0)
    assert E.parse("3.0e-4") == E.Num(3e-4)


def test_precedence_matches_python():
    values = {"a": 2.0, "b": 3.0, "c": 4.0}
    for text in ["a + b * c", "(a + b) * c", "-a ** 2", "a - b - c", "a / b / c", "c // b % a", "a ** b ** 0.5"]:
        got = E.evaluate(E.parse(text), lambda r: values[r.parts[0]])
        assert got == pytest.approx(eval(text, {}, values))


@pytest.mark.parametrize("text, col, fragment", [
    ("a.b <=", 6, "expected a value"),
    ("a = b", 2, "'=' is not a comparison"),
    ("within(a.x, b.x", 15, "')'"),
    ("foo(1)", 0, "unknown function"),
    ("a.nrmse @ 2", 8, "unexpected character"),
    ("", 0, "empty"),
])
def test_syntax_errors_point_at_the_column(text, col, fragment):
    with pytest.raises(E.ExprError) as info:
        E.check(E.parse(text), lambda r: E.Type.NUM)
    assert info.value.col == col
    assert fragment in info.value.message


def test_type_errors():
    num = lambda r: E.Type.NUM  # noqa: E731
    with pytest.raises(E.ExprError, match="condition"):
        E.check(E.parse("a.x + 1"), num, E.Type.BOOL)
    with pytest.raises(E.ExprError, match="needs a number"):
        E.check(E.parse("(a.x < 1) + 1"), num)
    with pytest.raises(E.ExprError, match="exactly one of rel= or abs="):
        E.check(E.parse("within(a.x, b.x)"), num)
    with pytest.raises(E.ExprError, match="no option 'tol'"):
        E.check(E.parse("within(a.x, b.x, tol=1)"), num)


def test_scalar_evaluation_keeps_nan():
    nan_rule = E.parse("loss != loss or loss > 1e3")
    assert E.evaluate(nan_rule, lambda r: math.nan) is True
    assert E.evaluate(nan_rule, lambda r: 2.0) is False
    assert E.evaluate(nan_rule, lambda r: 5e3) is True


# ---------------------------------------------------------------- properties

names = st.from_regex(r"[a-z][a-z0-9_]{0,6}", fullmatch=True).filter(lambda s: s not in E.KEYWORDS)
numbers = st.floats(min_value=0, max_value=1e6, allow_nan=False).map(lambda x: round(x, 4))


def nodes():
    leaves = st.one_of(
        numbers.map(E.Num),
        st.lists(names, min_size=1, max_size=2).map(lambda p: E.Ref(tuple(p))),
    )

    def extend(children):
        return st.one_of(
            st.tuples(st.sampled_from(["+", "-", "*", "/", "//", "%", "**", "and", "or"]), children, children)
            .map(lambda t: E.Binary(*t)),
            children.map(lambda c: E.Unary("-", c)),
            children.map(lambda c: E.Unary("not", c)),
            st.tuples(st.sampled_from(E.COMPARISONS), children, children).map(lambda t: E.Compare((t[0],), (t[1], t[2]))),
            st.lists(children, min_size=1, max_size=3).map(lambda a: E.Call("max", tuple(a))),
            st.tuples(children, children, numbers.map(E.Num)).map(
                lambda t: E.Call("within", (t[0], t[1]), (("rel", t[2]),))),
        )

    return st.recursive(leaves, extend, max_leaves=8)


@settings(max_examples=300, deadline=None)
@given(nodes())
def test_print_then_parse_gives_the_tree_back(node):
    assert E.parse(E.to_source(node)) == node


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_arbitrary_text_raises_only_expr_error(text):
    try:
        node = E.parse(text)
    except E.ExprError:
        return
    E.to_source(node)


# ------------------------------------------------------------------ hostile input (issue 14, items 5, 6 and 9)


@pytest.mark.parametrize("text", ["(" * 110 + "a.x" + ")" * 110 + " <= 1", " + ".join(["a.x"] * 490) + " <= 1",
                                  "-" * 2000 + "a.x <= 1", "not " * 300 + "a.x <= 1", "abs(" * 120 + "1" + ")" * 120,
                                  "a.x ** " * 300 + "2"])
def test_deep_expressions_are_refused_with_a_position_not_a_recursion_error(text):
    with pytest.raises(E.ExprError) as info:
        E.parse(text)
    assert "nest" in info.value.message or "nested" in info.value.message
    assert 0 < info.value.col < len(text)


def test_expressions_within_the_limits_evaluate():
    text = " + ".join(["x"] * (E.MAX_DEPTH - 1))
    assert E.evaluate(E.parse(text), lambda r: 1.0) == E.MAX_DEPTH - 1
    nested = "(" * E.MAX_NESTING + "x" + ")" * E.MAX_NESTING
    assert E.evaluate(E.parse(nested), lambda r: 2.0) == 2.0
    assert E.parse(E.to_source(E.parse(text))) == E.parse(text)


def test_a_too_long_expression_is_refused():
    with pytest.raises(E.ExprError, match="characters long") as info:
        E.parse("x" * (E.MAX_LENGTH + 1))
    assert info.value.col == E.MAX_LENGTH


@pytest.mark.parametrize("text", ["1e999 > 1", "a.x <= 1e400"])
def test_a_literal_beyond_float_is_refused_where_it_stands(text):
    with pytest.raises(E.ExprError, match="too large") as info:
        E.parse(text)
    assert text[info.value.col:].startswith("1e")


def test_overflow_in_plain_evaluation_is_nan():
    assert math.isnan(E.evaluate(E.parse("10 ** 10 ** 10"), lambda r: 0.0))
    assert math.isnan(E.evaluate(E.parse("x ** 400"), lambda r: 10.0))
    assert math.isnan(E.evaluate(E.parse("x ** 0.5"), lambda r: -4.0))  # not a complex number
    assert math.isnan(E.evaluate(E.parse("x // 0"), lambda r: 1.0))


@pytest.mark.parametrize("text", ["a.x <= \u0665", "a.x <= \uff11", "a.x <= 1\u0660", "\u0661a.x <= 1"])
def test_unicode_digits_are_not_numbers(text):
    with pytest.raises(E.ExprError, match="unexpected character") as info:
        E.parse(text)
    assert "ASCII" in (info.value.hint or "")


def test_one_evaluator_with_a_domain():
    class Text(E.Domain):  # what a name means and what values are: the caller's choice
        def const(self, node):
            return str(node.value)

        def arith(self, op, a, b, node):
            return f"({a} {op} {b})"

    assert E.evaluate(E.parse("a.x + 2 * b"), lambda r: r.dotted, Text()) == "(a.x + (2.0 * b))"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(list("()+-*/<=>.ab1 notr,") + ["**", "abs(", "min(", "1e999", "\u0663"]),
                max_size=80).map("".join))
def test_any_text_parses_or_gives_a_positioned_error(text):
    try:
        node = E.parse(text)
    except E.ExprError as err:
        assert 0 <= err.col <= len(text)
        return
    E.parse(E.to_source(node))
