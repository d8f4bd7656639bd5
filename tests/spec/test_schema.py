"""The JSON Schema editors read: committed, current, and true to the study files."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from studyc.cli import main
from studyc.spec.schema import REGENERATE, SCHEMA_FILE, json_schema, schema_text
from studyc.spec.yamlpos import parse

REPO = Path(__file__).resolve().parents[2]
STUDIES = sorted((REPO / "studies").glob("*.yaml"))
HEADER = "# yaml-language-server: $schema=../studyc.schema.json"


def test_committed_schema_is_current():
    committed = (REPO / SCHEMA_FILE).read_text(encoding="utf-8")
    assert committed == schema_text(), f"{SCHEMA_FILE} is stale: regenerate it with `{REGENERATE}`"


def test_schema_command_prints_the_schema():
    result = CliRunner().invoke(main, ["schema"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == json_schema()


def test_schema_carries_the_language_reference():
    schema = json_schema()
    assert schema["$schema"].startswith("https://json-schema.org/")
    stage = schema["$defs"]["Stage"]["properties"]
    assert "promote" in stage and "gate" in stage and stage["gate"]["description"]
    assert schema["$defs"]["Arm"]["properties"]["zip"]["description"]  # aliases, not field names
    assert "from" in schema["$defs"]["Metric"]["properties"]


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: p.name)
def test_every_study_points_editors_at_the_schema(path):
    assert path.read_text(encoding="utf-8").splitlines()[0] == HEADER


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: p.name)
def test_every_study_matches_the_schema(path):
    jsonschema = pytest.importorskip("jsonschema")
    data = json.loads(json.dumps(parse(path.read_text(encoding="utf-8"))))
    jsonschema.Draft202012Validator(json_schema()).validate(data)


def test_schema_rejects_what_the_loader_rejects():
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(json_schema())
    study = {"study": "s", "run": {"command": "x"}, "metrics": {"m": {}}, "arms": {"a": {}}}
    assert not list(validator.iter_errors(study))
    assert list(validator.iter_errors({**study, "budget": {"wall": "three hours"}}))
    assert list(validator.iter_errors({**study, "arms": {"a": {"confg": {}}}}))
    assert not list(validator.iter_errors({**study, "budget": {"wall": "1h30m"}}))
