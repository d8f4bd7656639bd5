"""The reference lives in the repository and follows the models: every field is
described, and docs/language.md's key list is the one the models generate."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
from pydantic import BaseModel, Field

from studyc.spec import docgen, model

REPO = Path(__file__).resolve().parents[2]


def _models() -> list[type[BaseModel]]:
    """Every pydantic model defined in studyc/spec/model.py."""
    return [m for _, m in inspect.getmembers(model, inspect.isclass)
            if issubclass(m, BaseModel) and m.__module__ == model.__name__]


def undescribed(models: list[type[BaseModel]]) -> list[str]:
    return [f"{m.__name__}.{name}" for m in models for name, f in m.model_fields.items() if not f.description]


def test_every_study_field_has_a_description():
    missing = undescribed(_models())
    assert not missing, f"add Field(..., description=...) to: {', '.join(missing)}"


def test_every_model_reachable_from_the_study_is_checked():
    reachable = {path.split(".")[0] for path, *_ in docgen.rows()}
    assert {"run", "arms", "stages", "budget", "cloud"} <= reachable
    assert len(_models()) >= 15  # the walk above sees the whole module, not one class


def test_a_field_without_description_is_caught():
    class Fake(BaseModel):
        named: int = Field(1, description="has one")
        bare: int = 2

    assert undescribed([Fake]) == ["Fake.bare"]


def test_language_doc_key_list_is_generated_from_the_models():
    text = (REPO / "docs" / "language.md").read_text(encoding="utf-8")
    assert docgen.replace_block(text) == text, f"docs/language.md is stale: run `{docgen.REGENERATE}`"


def test_key_list_names_every_field_and_its_default():
    rows = {path: (kind, default, text) for path, kind, default, text in docgen.rows()}
    assert rows["run.command"][1] == "required"
    assert rows["stats.confidence"][1] == "0.95"
    assert rows["decision[].if"][0] == "expression or null"  # aliases, as files spell them
    assert rows["run.resources.timeout"][0] == "duration or null"
    assert rows["on_failure.<failure>.retries"][2]
    assert "keys as `run.resources`" in rows["arms.<name>.resources"][0]


def test_a_new_field_appears_in_the_key_list():
    class Extra(model.Strict):
        knob: float = Field(0.5, description="a new knob")

    assert ("knob", "number", "0.5", "a new knob") in docgen.rows(Extra)
    assert "| `knob` | number | 0.5 | a new knob |" not in docgen.render()


def test_replace_block_needs_the_markers():
    with pytest.raises(ValueError, match="markers"):
        docgen.replace_block("# no markers here\n")


@pytest.mark.parametrize("name", ["README.md", "docs/language.md", "docs/cli.md"])
def test_docs_point_inside_the_repository(name):
    text = (REPO / name).read_text(encoding="utf-8")
    assert "../shared" not in text and "/work/" not in text


def test_readme_links_the_reference():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    for doc in ("docs/language.md", "docs/cli.md"):
        assert f"]({doc}" in text
        assert (REPO / doc).exists()


def test_cli_doc_covers_every_command_and_option():
    """docs/cli.md names every command and every long option it takes."""
    from studyc.cli import main

    text = (REPO / "docs" / "cli.md").read_text(encoding="utf-8")
    missing = []
    for name, command in main.commands.items():
        if f"## studyc {name}" not in text:
            missing.append(f"the section '## studyc {name}'")
        for param in command.params:
            flags = [o for o in getattr(param, "opts", []) if o.startswith("--")]
            missing += [f"{name} {flag}" for flag in flags if f"`{flag}" not in text]
    assert not missing, "document in docs/cli.md: " + ", ".join(missing)
