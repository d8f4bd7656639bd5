"""Before any run starts: the directories studyc will write into must be writable, so a
read-only report directory or a full disk is found in a second, not after hours of runs.
Each problem names the path and what studyc was going to do there."""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

from studyc.errors import RunError

_HINTS = {
    errno.EACCES: "check its permissions, or choose another directory",
    errno.EPERM: "check its permissions, or choose another directory",
    errno.EROFS: "the file system is read-only: choose a directory on a writable one",
    errno.ENOSPC: "the disk is full: free some space",
    errno.EDQUOT: "the disk quota is used up: free some space",
    errno.ENOTDIR: "a file stands where a directory is needed: move or remove it",
    errno.EEXIST: "a file stands where a directory is needed: move or remove it",
}


def os_error(exc: OSError, what: str, path: Path | str | None = None) -> RunError:
    """``exc`` as one line: the operation, the path, why, and what to do."""
    where = path if path is not None else exc.filename
    reason = exc.strerror or str(exc)
    return RunError(f"cannot {what} {where}: {reason}", _HINTS.get(exc.errno or 0, "check the path and the disk"))


def writable_dir(path: Path, what: str) -> None:
    """Whether ``path`` can be made and written: a probe file is written and removed in
    it, or, while it does not exist yet, in its nearest existing parent (nothing is left
    behind)."""
    path = Path(path)
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        problem = "it is a file, not a directory" if existing == path else f"{existing} is a file, not a directory"
        raise RunError(f"cannot {what} {path}: {problem}", _HINTS[errno.ENOTDIR])
    try:
        fd, probe = tempfile.mkstemp(dir=existing, prefix=".studyc-probe-")
        try:
            os.write(fd, b"x")
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as exc:
        raise os_error(exc, what, path) from None


def check_report_dir(report_dir: Path) -> None:
    writable_dir(report_dir, "write the report in")
    writable_dir(report_dir / "plots", "write plots in")


def check_run_outputs(report_dir: Path, runs_dir: Path, leaderboard: str | None) -> None:
    """Everything `studyc run` writes: run directories, the report (and its plots), the leaderboard."""
    writable_dir(runs_dir, "write run directories in")
    check_report_dir(report_dir)
    if leaderboard:
        board = Path(leaderboard)
        writable_dir(board.parent, "write the leaderboard in")
        if board.exists() and not board.is_file():
            raise RunError(f"cannot write the leaderboard {board}: it is a directory", "point report.leaderboard at a file")
