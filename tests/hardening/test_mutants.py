"""Issue 14, done-when: mutants of the five studies in studies/ (a line deleted or
duplicated, a value of another type, unicode, huge numbers, unknown keys, broken
expressions, shifted indentation) never make `validate`, `plan` or `compile` fail
with an internal error: each ends with exit 0 or a clean exit 1.

Deterministic (seeded). ``STUDYC_MUTANTS`` sets how many mutants per study (default 30).
"""

import os
import random
import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from studyc.cli import main

STUDIES = sorted((Path(__file__).parents[2] / "studies").glob("*.yaml"))
PER_STUDY = int(os.environ.get("STUDYC_MUTANTS", "30"))
COMPILED_PER_STUDY = 4  # compile is the slow command: a few valid mutants each
_KEY_VALUE = re.compile(r"^(\s*(?:- )?[\w.+-]+:\s)(.+)$")
_NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?(?![\w.])")
_EXPR_LINE = re.compile(r"^(\s*(?:- )?(?:check|gate|when|expr|if|\"?[A-Za-z_]\w*\"?)\s*:\s*)(.*(?:<|>|==|\.).*)$")

VALUES = ["[1, 2]", "{a: 1}", '"text"', "true", "null", "-1", "0", "1e999", ".nan", "''", "[]", "{}",
          "9" * 400, "-9223372036854775809", "1e308", '"{config.nope}"', "&x 1", "*undefined"]
UNICODE = ["é", "\x07", "\x00", "\u202e", "🙂", "\u0085", "\u200b", "１２", "ǅ", "\ufeff", "\u2028", "𝟗"]
EXPRESSIONS = ["a.x <=", "((((", "max()", "x.y.z.w > 1", "a.x ** 400 > 1", "1e999 > 0", "'s' > 1",
               "within(a.x)", "and or", "a.x <= b.x <= c.x", "count() > 1", "((" * 20 + "1" + "))" * 20 + " > 0",
               "a.x > 1 if b else c", "lambda: 1", "__import__('os')", "a.x[0] > 1", "¹ > 0", "٣ > 1"]


def mutate(lines: list[str], rng: random.Random) -> tuple[str, list[str]]:
    out = list(lines)
    i = rng.randrange(len(out))
    kind = rng.choice(["delete", "duplicate", "type", "unicode", "number", "unknown_key", "expression", "indent",
                       "tab", "truncate", "deep"])
    line = out[i]
    if kind == "delete":
        del out[i]
    elif kind == "duplicate":
        out.insert(i, line)
    elif kind == "type":
        match = _KEY_VALUE.match(line)
        if match:
            out[i] = match.group(1) + rng.choice(VALUES)
    elif kind == "unicode":
        at = rng.randrange(len(line) + 1)
        out[i] = line[:at] + rng.choice(UNICODE) + line[at:]
    elif kind == "number":
        out[i] = _NUMBER.sub(lambda m: rng.choice(["9" * 400, "1e999", "-1", "0", "2.5", "9223372036854775808"]),
                             line, count=1)
    elif kind == "unknown_key":
        indent = line[: len(line) - len(line.lstrip())]
        out.insert(i + 1, f"{indent}bogus_key_{rng.randrange(100)}: 1")
    elif kind == "expression":
        candidates = [j for j, text in enumerate(out) if _EXPR_LINE.match(text)]
        if candidates:
            j = rng.choice(candidates)
            out[j] = _EXPR_LINE.match(out[j]).group(1) + '"' + rng.choice(EXPRESSIONS).replace('"', "'") + '"'
    elif kind == "indent":
        out[i] = ("  " + line) if rng.random() < 0.5 else line[2:]
    elif kind == "tab":
        out[i] = "\t" + line
    elif kind == "deep":
        match = _KEY_VALUE.match(line)
        if match:
            depth = rng.choice([30, 300, 3000])
            out[i] = match.group(1) + rng.choice(["{a: " * depth + "1" + "}" * depth, "[" * depth + "]" * depth])
    elif kind == "truncate":
        out[i] = line[: rng.randrange(len(line) + 1)]
    return kind, out


def assert_clean(result, what: str) -> None:
    assert result.exit_code in (0, 1), f"{what}: exit {result.exit_code}\n{result.output}"
    assert "internal error" not in result.output and "Traceback" not in result.output, f"{what}:\n{result.output}"
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"{what}: {result.exception!r}") from result.exception


@pytest.mark.parametrize("original", STUDIES, ids=lambda p: p.stem)
def test_mutants_of_a_study_never_cause_an_internal_error(original, tmp_path, capsys):
    studies = tmp_path / "studies"  # the studies' workdir is `..`: a small tmp tree, not the repo
    studies.mkdir()
    lines = original.read_text(encoding="utf-8").splitlines()
    rng = random.Random(original.stem)
    runner = CliRunner()
    tried, valid, compiled = 0, 0, 0
    for n in range(PER_STUDY):
        kind, mutant = mutate(lines, rng)
        path = studies / f"m{n}.yaml"
        path.write_text("\n".join(mutant) + "\n", encoding="utf-8")
        what = f"{original.name} mutant {n} ({kind})"
        tried += 1
        result = runner.invoke(main, ["validate", str(path)])
        assert_clean(result, f"validate {what}")
        if result.exit_code != 0:
            continue
        valid += 1
        assert_clean(runner.invoke(main, ["plan", str(path)]), f"plan {what}")
        if compiled < COMPILED_PER_STUDY:
            compiled += 1
            out = tmp_path / "out"
            assert_clean(runner.invoke(main, ["compile", str(path), "-o", str(out)]), f"compile {what}")
            shutil.rmtree(out, ignore_errors=True)
    with capsys.disabled():
        print(f"\n{original.name}: {tried} mutants, {valid} still valid (planned), {compiled} compiled")
    assert tried == PER_STUDY
