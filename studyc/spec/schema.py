"""The JSON Schema of a study file, from the pydantic models and their descriptions.

Editors use it through the first line of every study:
``# yaml-language-server: $schema=../studyc.schema.json``. `studyc schema` prints it; the
committed ``studyc.schema.json`` is kept equal to it by a test.
"""

from __future__ import annotations

import json
from typing import Any

from studyc.spec.model import Study

SCHEMA_FILE = "studyc.schema.json"
REGENERATE = f"studyc schema > {SCHEMA_FILE}"


def json_schema() -> dict[str, Any]:
    schema = Study.model_json_schema(by_alias=True, mode="validation")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


def schema_text() -> str:
    """The schema as the committed file holds it (stable key order, trailing newline)."""
    return json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n"
