"""Pre-registration status from the store's record of the locked checks."""

from studyc.report.prereg import preregistration

LOCKED = {"checks_hash": "aaaa", "checks_locked_at": 1762250400.0, "checks_changed_after_results": 0}


def test_not_locked_before_any_run():
    assert preregistration(None, "aaaa", False)["status"] == "not locked"
    assert preregistration({**LOCKED, "checks_locked_at": None}, "aaaa", False)["warning"] is False


def test_unchanged_checks():
    p = preregistration(LOCKED, "aaaa", True)
    assert (p["status"], p["warning"]) == ("locked", False) and "2025-11-04 10:00 UTC" in p["text"]


def test_checks_changed_after_results_warn():
    p = preregistration(LOCKED, "bbbb", True)
    assert (p["status"], p["warning"], p["locked_hash"], p["current_hash"]) == ("changed after results", True, "aaaa", "bbbb")
    assert p["text"].startswith("WARNING: the checks changed after results existed")


def test_checks_changed_before_any_result_still_say_so():
    p = preregistration(LOCKED, "bbbb", False)
    assert (p["status"], p["warning"]) == ("changed before results", True)


def test_checks_changed_and_restored_are_remembered():
    p = preregistration({**LOCKED, "checks_changed_after_results": 1}, "aaaa", True)
    assert p["warning"] is True and "restored" in p["text"]
