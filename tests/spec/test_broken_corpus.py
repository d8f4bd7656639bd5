"""A corpus of realistic mistakes (tests/spec/broken/*.yaml). Each file states in its header
the line the error must point at, a fragment of the message and one of the hint:

    # what the mistake is
    # expect-line: 12
    # expect-message: unknown key 'seed'
    # expect-hint: did you mean 'seeds'?      (or '-' when the message says it all)
"""

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from studyc.cli import main
from studyc.spec.loader import validate_file

BROKEN = sorted((Path(__file__).parent / "broken").glob("*.yaml"))
_HEADER = re.compile(r"^# expect-(line|message|hint): (.*)$", re.M)


def expectations(path: Path) -> dict[str, str]:
    found = dict(_HEADER.findall(path.read_text(encoding="utf-8")))
    assert found.keys() == {"line", "message", "hint"}, f"{path.name}: header incomplete"
    return found


def test_the_corpus_is_large_enough():
    assert len(BROKEN) >= 30


@pytest.mark.parametrize("path", BROKEN, ids=lambda p: p.stem)
def test_broken_study_gets_the_right_line_and_a_useful_hint(path):
    want = expectations(path)
    errors = validate_file(path)
    assert errors, f"{path.name}: no error reported"
    for err in errors:
        assert err.file == str(path) and err.line > 0 and err.col > 0, f"unpositioned: {err}"
    matching = [e for e in errors if e.line == int(want["line"]) and want["message"] in e.message]
    assert matching, f"{path.name}: wanted line {want['line']} '{want['message']}', got:\n" + "\n".join(map(str, errors))
    err = matching[0]
    assert err.text is not None and err.text == path.read_text(encoding="utf-8").splitlines()[err.line - 1]
    assert err.col <= len(err.text) + 1
    if want["hint"] != "-":
        assert err.hint and want["hint"] in err.hint, f"{path.name}: hint {err.hint!r}"


def test_validate_reports_every_broken_file_at_once():
    result = CliRunner().invoke(main, ["validate", *map(str, BROKEN)])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert all(f"{path}:" in result.output for path in BROKEN)
