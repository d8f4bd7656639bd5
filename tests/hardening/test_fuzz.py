"""Fuzzing (hypothesis, bounded) the loader, expressions and compile: whatever the input,
the outcome is a result or a positioned user error, never an exception of studyc's own.
(metrics.jsonl lines are fuzzed in test_bad_metrics.py.)"""

import textwrap

import yaml
from hypothesis import HealthCheck, event, given, settings, strategies as st

from studyc.compiler.plan import compile_plan
from studyc.compiler.sky import write_compiled
from studyc.errors import RunError, StudyErrors
from studyc.spec import expr as E
from studyc.spec.loader import load

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOW_FUZZ = settings(max_examples=30, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(10**30), max_value=10**30), st.floats(),
                    st.text(max_size=12))
trees = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                      st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                     max_leaves=20)


def loads_or_refuses(text: str) -> None:
    try:
        load("fuzz.yaml", text=text)
    except StudyErrors as exc:
        assert exc.errors and all(e.message for e in exc.errors)


@FUZZ
@given(st.text(max_size=300))
def test_loader_any_text(text):
    loads_or_refuses(text)


@FUZZ
@given(st.dictionaries(st.sampled_from(["study", "run", "metrics", "arms", "hypotheses", "stages", "budget",
                                        "baselines", "profiles", "on_failure", "stop", "decision", "x"]),
                       trees, max_size=6))
def test_loader_any_yaml_tree(tree):
    loads_or_refuses(yaml.safe_dump(tree, allow_unicode=True))


@FUZZ
@given(st.text(max_size=60))
def test_expressions_parse_or_say_where(text):
    try:
        E.parse(text)
    except E.ExprError as exc:
        assert 0 <= exc.col <= len(text) + 1


TEMPLATE = textwrap.dedent("""\
    study: fuzz
    run:
      command: python train.py --x {{config.x}} --seed {{seed}}
      config: {{x: {x}, y: {y}}}
      env: {{FUZZ: {env}}}
      seeds: [0]
      resources: {{hours: 0.01}}
    metrics:
      loss: {{goal: min, unit: {unit}}}
    arms:
      a: {{label: {label}}}
      b: {{config: {{x: {x2}}}}}
    hypotheses:
      H1: {{claim: {claim}, check: "a.loss <= b.loss"}}
    """)


def quoted(text: str) -> str:
    return yaml.safe_dump(text, allow_unicode=True, width=10**6).removesuffix("\n...\n").strip()


@SLOW_FUZZ
@given(x=scalars, y=trees, x2=scalars, env=st.text(max_size=20), unit=st.text(max_size=10),
       label=st.text(max_size=20), claim=st.text(min_size=1, max_size=30))
def test_compile_any_values(tmp_path_factory, x, y, x2, env, unit, label, claim):
    base = tmp_path_factory.mktemp("fuzz")
    text = TEMPLATE.format(x=quoted(x) if isinstance(x, str) else yaml.safe_dump(x).split("\n")[0],
                           y=yaml.safe_dump(y, default_flow_style=True, allow_unicode=True, width=10**6).strip()
                           .removesuffix("...").strip(),
                           x2=quoted(x2) if isinstance(x2, str) else yaml.safe_dump(x2).split("\n")[0],
                           env=quoted(env), unit=quoted(unit), label=quoted(label), claim=quoted(claim))
    path = base / "study.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        loaded = load(path)
    except StudyErrors:
        event("refused by validation")
        return
    try:
        write_compiled(loaded, compile_plan(loaded), base / "out")
        event("compiled")
    except RunError:
        event("refused at compile")
