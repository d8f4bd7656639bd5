"""One quoting function per output format, for everything user-derived (names, labels,
units, claims, config values, a run's log) that lands in a shell command, a markdown
report or a CSV file. YAML (compiled SkyPilot tasks) is quoted by its writer.
"""

from __future__ import annotations

import csv
import re
import shlex
from typing import IO, Any, Iterable

_CONTROL = re.compile(r"[\x00-\x1f\x7f\u0085\u2028\u2029]")
_UNESCAPED_PIPE = re.compile(r"(?<!\\)\|")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n")


def shell(value: Any) -> str:
    """One shell word that is exactly ``value`` (no expansion, no word splitting)."""
    text = str(value)
    if "\0" in text:  # no shell word can hold a NUL; validation refuses them earlier
        raise ValueError("a NUL character cannot be passed on a command line")
    return shlex.quote(text)


def markdown(value: Any) -> str:
    """Text that stays inside one markdown line or table cell: line breaks and other
    control characters become spaces, and ``|`` is escaped. Idempotent."""
    text = "" if value is None else str(value)
    return _UNESCAPED_PIPE.sub(r"\\|", _CONTROL.sub(" ", text))


class Verbatim(str):
    """Markdown already made safe as a block (``fenced``): printed as is."""


def fenced(value: Any, info: str = "") -> Verbatim:
    """``value`` as a fenced code block whose fence no line of it can close."""
    text = "" if value is None else str(value).replace("\r", "")
    longest = max((len(m) for m in re.findall(r"`{3,}", text)), default=2)
    fence = "`" * (longest + 1)
    return Verbatim(f"{fence}{info}\n{text}\n{fence}")


def csv_cell(value: Any) -> Any:
    """A cell a spreadsheet shows as text: one that would start a formula (=, +, -, @)
    gets a leading apostrophe, unless it is a number. Idempotent."""
    if not isinstance(value, str) or not value.startswith(_FORMULA_START):
        return value
    try:
        float(value)
        return value
    except ValueError:
        return "'" + value


class CsvWriter:
    """csv.writer whose cells pass through ``csv_cell``."""

    def __init__(self, fh: IO[str]):
        self._writer = csv.writer(fh)

    def writerow(self, row: Iterable[Any]) -> None:
        self._writer.writerow([csv_cell(v) for v in row])
