"""Reading a run's metrics.jsonl, which a run (any program, careless or hostile) wrote.

Each line must be one flat JSON object: ``t`` (a time), ``step`` (a whole number that fits
in 64 bits) and metric values (numbers; NaN and inf stay, a diverged run must be seen).
A line that is not one fails its run with the class ``bad_metrics``, the line number and
why, and never studyc itself. An unterminated last line that does not parse is a write
cut short by a kill and is skipped.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MAX_LINE_BYTES = 1 << 20  # a record of a few metrics is ~100 bytes
MAX_FILE_BYTES = 256 << 20  # ~2.5 million records: beyond, a runaway logger would exhaust studyc's memory
MAX_NUMBER_CHARS = 400  # 1e308 has 309 digits; more is not a measurement
MAX_NAME_CHARS = 200
_INT64 = 1 << 63


class BadLine(ValueError):
    """One line of metrics.jsonl that is not a valid record."""

    def __init__(self, line: int, why: str):
        super().__init__(f"metrics.jsonl line {line}: {why}")
        self.line = line
        self.why = why


@dataclass
class Metrics:
    """The valid records before the first bad line, and that line's problem (or None)."""

    records: list[dict[str, Any]]
    bad: BadLine | None = None


def _bounded(convert: type) -> Any:
    def parse(text: str) -> Any:
        if len(text) > MAX_NUMBER_CHARS:
            raise ValueError(f"a number with {len(text)} characters")
        return convert(text)

    return parse


def _no_nesting(text: str) -> None:
    """A record is flat: refuse nesting before the parser recurses into it."""
    depth = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > 2:
                raise ValueError("nested lists or objects: a record is flat, e.g. {\"step\": 3, \"loss\": 0.5}")
        elif ch in "]}":
            depth -= 1


def parse_line(raw: bytes, number: int) -> dict[str, Any]:
    """One line (without its newline) as a record; raises BadLine saying why not."""
    if len(raw) > MAX_LINE_BYTES:
        raise BadLine(number, f"the line is {len(raw)} bytes long (at most {MAX_LINE_BYTES})")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadLine(number, f"not UTF-8 text (byte {exc.start + 1})") from None
    if not text.strip():
        raise BadLine(number, "an empty line")
    try:
        if text.count("[") + text.count("{") > 2:  # cheap: most lines have one brace
            _no_nesting(text)
        record = json.loads(text, parse_int=_bounded(int), parse_float=_bounded(float))
    except RecursionError:
        raise BadLine(number, "nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError included
        raise BadLine(number, f"not a JSON object: {str(exc)[:120]}") from None
    if not isinstance(record, dict):
        raise BadLine(number, f"a JSON {type(record).__name__}, not an object like {{\"step\": 3, \"loss\": 0.5}}")
    for key, value in record.items():
        _check_value(key, value, number)
    return record


def _check_value(key: str, value: Any, number: int) -> None:
    if len(key) > MAX_NAME_CHARS or not key.isprintable():
        raise BadLine(number, f"metric name {key[:40]!r} is too long or holds control characters")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadLine(number, f"'{key[:40]}' is {json.dumps(value)[:40]}, not a number")
    if key == "step":
        if not isinstance(value, int) and not (math.isfinite(value) and value.is_integer()):
            raise BadLine(number, f"step is {value!r}, not a whole number")
        if not -_INT64 <= value < _INT64:
            raise BadLine(number, "step does not fit in 64 bits")
    elif isinstance(value, int) and abs(value) >= 1 << 1023:
        raise BadLine(number, f"'{key[:40]}' is too large for a float")


def read(path: Path) -> Metrics:
    """Every record of ``path`` up to the first bad line (empty if there is no file)."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        return Metrics([])
    if len(data) <= MAX_FILE_BYTES:
        return parse(data)
    data = data[: data.rfind(b"\n", 0, MAX_FILE_BYTES) + 1]
    parsed = parse(data)
    if parsed.bad is None:
        parsed.bad = BadLine(data.count(b"\n") + 1, f"the file is larger than {MAX_FILE_BYTES >> 20} MiB: log less often")
    return parsed


def parse(data: bytes) -> Metrics:
    lines = data.split(b"\n")
    torn = lines.pop()  # b"" when the file ends with a newline
    records = []
    for number, raw in enumerate(lines, start=1):
        raw = raw.rstrip(b"\r")
        if not raw.strip():
            continue
        try:
            records.append(normalise(parse_line(raw, number)))
        except BadLine as bad:
            return Metrics(records, bad)
    if torn.strip():
        try:
            records.append(normalise(parse_line(torn, len(lines) + 1)))
        except BadLine:
            pass  # a write cut short by a kill
    return Metrics(records)


def normalise(record: dict[str, Any]) -> dict[str, Any]:
    """``step`` as an int (a JSON 3.0 is step 3)."""
    if "step" in record and isinstance(record["step"], float):
        record["step"] = int(record["step"])
    return record
