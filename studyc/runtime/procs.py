"""Process bookkeeping on this machine: who owns a run, whether that studyc is alive, and
what is left of a run whose studyc died.

Linux-first (``/proc``); elsewhere the checks degrade to ``kill(pid, 0)``.
"""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path

from studyc.protocol import RUN_ID

_HAVE_PROC = os.path.exists("/proc/self/stat")


def _stat(pid: int | str) -> list[str] | None:
    """Fields 3.. of /proc/PID/stat (state, ppid, pgrp, ...), None if the process is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces: split after its closing ')'.
    return stat[stat.rindex(")") + 2:].split()


def _start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (tells a pid from its reuse);
    None if it is gone or a zombie."""
    fields = _stat(pid)
    return int(fields[19]) if fields and fields[0] != "Z" else None


def owner_token() -> str:
    """Names this studyc process: host, pid and start time."""
    return f"{socket.gethostname()}:{os.getpid()}:{_start_ticks(os.getpid()) or 0}"


def owner_alive(token: str | None) -> bool:
    """Whether the studyc named by ``token`` still runs. An owner on another host counts
    as gone: the store is local to one machine."""
    if not token:
        return False
    host, pid_text, ticks_text = token.rsplit(":", 2)
    pid, ticks = int(pid_text), int(ticks_text)
    if host != socket.gethostname():
        return False
    if pid == os.getpid():
        return True
    if _HAVE_PROC:
        now = _start_ticks(pid)
        return now is not None and (ticks == 0 or now == ticks)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run_env(pid: int) -> dict[str, str]:
    """The environment a process started with (empty if it is gone or not ours)."""
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
    return {k.decode(errors="replace"): v.decode(errors="replace") for k, v in pairs}


def run_processes(leader: int, run_id: str) -> list[int]:
    """Live processes of a run whose shell ``leader`` leads its own session and process
    group: the group, the session (a child that made a group of its own), and any
    process carrying the run's STUDYC_RUN_ID (a grandchild that left the session with
    setsid: it keeps the environment it inherited)."""
    if not _HAVE_PROC:
        return []
    found, needle = [], f"{RUN_ID}={run_id}".encode()
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        fields = _stat(entry.name)
        if not fields or fields[0] == "Z":
            continue
        if int(fields[2]) == leader or int(fields[3]) == leader:
            found.append(int(entry.name))
            continue
        try:
            if run_id and needle in Path(f"/proc/{entry.name}/environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def signal_run(leader: int, run_id: str, sig: int) -> int:
    """Send ``sig`` to every process of the run (see ``run_processes``); how many there were."""
    pids = run_processes(leader, run_id)
    try:
        os.killpg(leader, sig)
    except (ProcessLookupError, PermissionError):
        pass
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            continue
    return len(pids)


def kill_orphans(pgid: int | None, run_id: str) -> int:
    """SIGKILL what is left of a run after its studyc died. Only if one of its processes
    is really that run (pids get reused)."""
    if not pgid:
        return 0
    members = run_processes(pgid, "")  # the group and session alone: is the leader still this run?
    if not any(run_env(pid).get(RUN_ID) == run_id for pid in members):
        return 0
    return signal_run(pgid, run_id, signal.SIGKILL)
