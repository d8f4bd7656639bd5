"""The studyc command line: ``commands`` (the click commands and exit codes), ``views``
(what they print) and ``live`` (a run's progress as it happens)."""

from studyc.cli.commands import main

__all__ = ["main"]
