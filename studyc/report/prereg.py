"""Pre-registration: the study's checks are locked (their hash stored) when its first run
starts; a report says whether the checks it judges are still the locked ones."""

from __future__ import annotations

import time
from typing import Any


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ts))


def preregistration(record: dict[str, Any] | None, checks_hash: str, has_results: bool) -> dict[str, Any]:
    """``record``: the store's row for the study (None if it never ran); ``checks_hash``:
    the hash of the checks judged now; ``has_results``: whether any run finished."""
    if record is None or record.get("checks_locked_at") is None:
        return {"status": "not locked", "warning": False, "locked_at": None, "locked_hash": None,
                "current_hash": checks_hash, "text": "checks not locked yet (no run has started)"}
    when = _when(record["checks_locked_at"])
    base = {"locked_at": when, "locked_hash": record["checks_hash"], "current_hash": checks_hash}
    changed = record["checks_hash"] != checks_hash
    if changed and (has_results or record.get("checks_changed_after_results")):
        return {**base, "status": "changed after results", "warning": True,
                "text": (f"WARNING: the checks changed after results existed. They were locked at {when} "
                         f"(hash {record['checks_hash']}); this report judges the current checks (hash {checks_hash}), "
                         "not the ones registered before the runs.")}
    if record.get("checks_changed_after_results"):
        return {**base, "status": "changed after results", "warning": True,
                "text": (f"WARNING: the checks were changed after results existed, then restored to the ones locked "
                         f"at {when} (hash {checks_hash}); reports in between judged other checks.")}
    if changed:
        return {**base, "status": "changed before results", "warning": True,
                "text": (f"the checks changed after they were locked at {when} (hash {record['checks_hash']}), "
                         f"before any run finished; this report judges the current checks (hash {checks_hash})")}
    return {**base, "status": "locked", "warning": False,
            "text": f"checks locked at {when} before the first run started (hash {checks_hash}), unchanged since"}
