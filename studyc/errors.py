"""Errors: the user's (StudyError, always positioned and with a hint) versus ours (bugs).

The CLI shows StudyErrors as a one-screen list and exits 1; any other exception is an
internal error and is shown as a bug to report.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Iterable


@dataclass
class StudyError(Exception):
    """A problem in the user's study, located at file:line:col (1-based; 0 when unknown)."""

    message: str
    file: str = "<study>"
    line: int = 0
    col: int = 0
    hint: str | None = None
    text: str | None = None  # the offending source line, when known
    path: tuple = field(default=(), compare=False)

    def __post_init__(self) -> None:
        super().__init__(self.message)

    @property
    def where(self) -> str:
        if self.line:
            return f"{self.file}:{self.line}:{self.col}"
        return self.file

    def __str__(self) -> str:
        text = f"{self.where}: {self.message}"
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text

    def to_dict(self) -> dict:
        return {
            "file": self.file,
            "line": self.line,
            "col": self.col,
            "message": self.message,
            "hint": self.hint,
            "text": self.text,
        }


class StudyErrors(Exception):
    """Every problem found in one pass, so the user fixes them all at once."""

    def __init__(self, errors: Iterable[StudyError]):
        self.errors = sorted(errors, key=lambda e: (e.file, e.line, e.col))
        super().__init__("\n".join(str(e) for e in self.errors))


class RunError(Exception):
    """A refusal or failure at plan or run time that is not a position in a file
    (over budget, does not fit in memory, store locked). Message says why and what to do."""

    def __init__(self, message: str, hint: str | None = None):
        self.message = message
        self.hint = hint
        super().__init__(message)


def did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    """The nearest known name as a hint, or the list of names when few and none is close."""
    choices = sorted(set(choices))
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    if close:
        return f"did you mean '{close[0]}'?"
    if choices and len(choices) <= 12:
        return "expected one of: " + ", ".join(choices)
    return None
