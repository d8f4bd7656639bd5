"""test_sky_executor's harness, shared by the cloud tests: `orchestrate.execute(...,
cloud=...)` in this process with the fake SkyPilot client, and what the store holds after."""

from __future__ import annotations

import threading
from pathlib import Path

from studyc import orchestrate
from studyc.runtime.sky_executor import CloudOptions
from studyc.runtime.store import Store
from studyc.spec.loader import load


class CloudRun:
    """`orchestrate.execute(..., cloud=...)` in this process, with the fake client."""

    def __init__(self, home: Path, fake):
        self.home = home
        self.fake = fake
        self.events = []
        self.asked: list[list[str]] = []

    def options(self, cancel: bool | None = None, **settings) -> CloudOptions:
        def confirm(jobs):
            self.asked.append(jobs)
            return cancel

        settings = {"refresh_s": 0.1, "settle_s": 5.0, **settings}
        return CloudOptions(client=self.fake, confirm_cancel=confirm if cancel is not None else None, **settings)

    def __call__(self, path: Path, cancel: bool | None = None, **settings):
        loaded = load(path)
        store = Store(self.home)
        try:
            plan = orchestrate.execute(loaded, store, self.events.append, cloud=self.options(cancel, **settings))
        finally:
            store.close()
        return loaded, plan

    def in_thread(self, path: Path, **settings) -> threading.Thread:
        errors = []

        def target():
            try:
                self(path, **settings)
            except BaseException as exc:  # noqa: BLE001 - handed to the test
                errors.append(exc)

        thread = threading.Thread(target=target, daemon=True)
        thread.errors = errors
        thread.start()
        return thread

    def store(self) -> Store:
        return Store(self.home)


def runs_by_arm(store: Store, study: str = "cloudy") -> dict[str, dict]:
    return {f"{r['arm']}/{r['seed']}": r for r in store.study_runs(study, None)}
