"""A fake of the few SkyPilot client calls studyc makes, for tests at the adapter boundary.

``FakeSky`` has ``launch``, ``queue_v2``, ``cancel``, ``get`` and ``stream_and_get`` with
the signatures of skypilot 0.14's ``sky.jobs.*``/``sky.*`` (a test checks them against the
real functions) and answers with SkyPilot's own types (``ManagedJobRecord``,
``ManagedJobStatus``). Its "cloud" is this machine: each managed job is a supervisor
process (this file, run as a script) that plays the jobs controller and the VM. It runs
the task's real ``run:`` script with bash, on a local folder standing in for the bucket
mount, uploads that folder to the real (moto) S3 bucket the way SkyPilot's MOUNT_CACHED
mode does, and applies the task's ``job_recovery`` (restarts on errors, recovery after a
preemption). State lives in files, so jobs outlive the studyc that launched them, as
managed jobs do, and any process can follow them.

What it answers where SkyPilot's answer matters (errors, failure reasons, statuses) is
recorded in ``fixtures/skypilot-<version>.json`` with the version it came from; the fake
refuses to run against another SkyPilot than the one recorded. Like the real controller,
there is none until the first launch (``queue_v2(refresh=False)`` raises
``ClusterNotUpError``); tests can stop it (as its autostop does) or tear it down.

Also runnable as ``python fake_sky.py studyc STATE -- ARGS...``: the real studyc CLI with
this fake in place of SkyPilot's client (tests kill it and start another).
"""

from __future__ import annotations

import fcntl
import functools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, List, Optional, Sequence, Union

import sky
from sky import exceptions as sky_exceptions
from sky.jobs.client.sdk import AUTO_JOB_GROUP
from sky.jobs.constants import DEFAULT_MANAGED_JOB_FIELDS
from sky.jobs.state import ManagedJobStatus
from sky.schemas.api.responses import ManagedJobRecord

TERMINAL = {s.value for s in ManagedJobStatus.terminal_statuses()}
FIXTURES = Path(__file__).with_name("fixtures")
RECORDED = json.loads((FIXTURES / f"skypilot-{sky.__version__}.json").read_text())  # no file: not a recorded version


def recorded_error(kind: str) -> BaseException:
    """The exception SkyPilot raises in the recorded situation ``kind``."""
    entry = RECORDED["errors"][kind]
    cls = getattr(sky_exceptions, entry["class"].rsplit(".", 1)[1])
    return cls(entry["message"])


def failure_reason(status: str, job_id: int, code: int | None = None) -> str:
    return RECORDED["failure_reason"][status].replace("{job_id}", str(job_id)).replace("{code}", str(code))


class FakeSky:
    def __init__(self, root: Path):
        self.root = Path(root)
        (self.root / "jobs").mkdir(parents=True, exist_ok=True)
        self._requests: dict[str, tuple[Any, BaseException | None]] = {}
        self.calls: list[tuple[str, dict[str, Any]]] = []
        # The next jobs end so, with SkyPilot's recorded failure_reason: a key of RECORDED["failure_reason"]
        # (FAILED_PRECHECKS, FAILED_NO_RESOURCE, FAILED_CONTROLLER, FAILED_driver: FAILED by the driver).
        self.launch_failure: str | None = None
        self.stuck_starting = False  # the next jobs never get a machine (STARTING until cancelled)
        self.launch_error: BaseException | None = None  # raised by the next launch request
        self.upload_results = True  # False: the jobs' files never reach the bucket
        self.pools: dict[str, dict[str, Any]] = {}  # pool name -> what pool_apply was given
        self.queue_error: BaseException | None = None  # raised by every queue request (server unreachable)
        # The real client's exception types, as studyc's SkyClient exposes them.
        self.ControllerNotUp = sky_exceptions.ClusterNotUpError
        self.NoController = sky_exceptions.ClusterDoesNotExist
        self.NoCloudAccess = sky_exceptions.NoCloudAccessError

    # ------------------------------------------------------------ controller

    @property
    def controller(self) -> str:
        """none (no job launched yet), up, stopped (autostop after idling) or down (torn down)."""
        path = self.root / "controller"
        return path.read_text() if path.exists() else "none"

    @controller.setter
    def controller(self, state: str) -> None:
        (self.root / "controller").write_text(state)

    # ------------------------------------------------------------ requests

    def _request(self, result: Any = None, error: BaseException | None = None) -> str:
        request_id = f"fake-request-{len(self._requests)}"
        self._requests[request_id] = (result, error)
        return request_id

    def get(self, request_id: str) -> Any:
        result, error = self._requests[request_id]
        if error is not None:
            raise error
        return result

    def stream_and_get(self, request_id: Optional[str] = None, log_path: Optional[str] = None,
                       tail: Optional[int] = None, follow: bool = True, output_stream: Any = None,
                       relay_rich_status: bool = False) -> Any:
        if output_stream is not None:
            output_stream.write(f"(fake) streaming request {request_id}\n")
        return self.get(request_id)

    # ------------------------------------------------------------ jobs API

    def launch(self, task: Any, name: Optional[str] = None, pool: Optional[str] = None,
               num_jobs: Optional[int] = None, job_group: Any = AUTO_JOB_GROUP,
               _need_confirmation: bool = False) -> str:
        self.calls.append(("launch", {"name": name, "pool": pool}))
        if pool is not None and pool not in self.pools:  # SkyPilot's client checks this first
            return self._request(error=ValueError(f"Pool {pool} not found."))
        if self.launch_error is not None:
            error, self.launch_error = self.launch_error, None
            return self._request(error=error)
        self.controller = "up"  # the first launch starts the jobs controller
        config = task.to_yaml_config()
        (mount, store), = (config.get("file_mounts") or {"": {"source": None}}).items()
        job_id = self._next_id()
        job = {
            "job_id": job_id, "job_name": name or task.name, "status": "PENDING", "submitted_at": time.time(),
            "start_at": None, "end_at": None, "recovery_count": 0, "failure_reason": None,
            "run": config["run"], "setup": config.get("setup"), "workdir": config["workdir"],
            "env": {**config.get("envs", {}), **config.get("secrets", {})},
            "bucket": (store.get("source") if isinstance(store, dict) else store) if self.upload_results else None,
            "recovery": (config.get("resources") or {}).get("job_recovery") or {},
            "fail": self.launch_failure, "stuck": self.stuck_starting,
        }
        write_job(self.root, job)
        log = open(self.root / "jobs" / f"{job_id}.supervisor.log", "wb")
        proc = subprocess.Popen([sys.executable, __file__, "supervise", str(self.root), str(job_id)],
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        (self.root / "jobs" / f"{job_id}.pid").write_text(str(proc.pid))
        return self._request(([job_id], None))

    def queue_v2(self, refresh: bool, skip_finished: bool = False, all_users: bool = False,
                 job_ids: Optional[List[int]] = None, limit: Optional[int] = None,
                 fields: Optional[Sequence[str]] = DEFAULT_MANAGED_JOB_FIELDS, sort_by: Optional[str] = None,
                 sort_order: Optional[str] = None, statuses: Optional[List[str]] = None,
                 submitted_after: Optional[float] = None, submitted_before: Optional[float] = None,
                 infra_match: Optional[str] = None, name_match: Optional[str] = None) -> str:
        self.calls.append(("queue_v2", {"job_ids": job_ids, "fields": fields, "name_match": name_match,
                                        "refresh": refresh}))
        if self.queue_error is not None:
            return self._request(error=self.queue_error)
        if self.controller in ("none", "down"):
            return self._request(error=recorded_error("no_controller_refresh" if refresh else "no_controller"))
        if self.controller == "stopped":
            if not refresh:
                return self._request(error=recorded_error("controller_stopped"))
            self.controller = "up"  # refresh=True starts it again
        jobs = sorted(self.jobs(), key=lambda j: -j["job_id"])
        total_no_filter = len(jobs)
        if job_ids is not None:
            jobs = [j for j in jobs if j["job_id"] in job_ids]
        if name_match is not None:
            jobs = [j for j in jobs if name_match in j["job_name"]]
        if skip_finished:
            jobs = [j for j in jobs if j["status"] not in TERMINAL]
        counts: dict[str, int] = {}
        for j in jobs:
            counts[j["status"]] = counts.get(j["status"], 0) + 1
        total = len(jobs)
        jobs = jobs[:limit] if limit else jobs
        keys = set(fields) if fields is not None else set(ManagedJobRecord.model_fields)
        records = [ManagedJobRecord(**{k: v for k, v in _record(j).items() if k in keys}) for j in jobs]
        return self._request((records, total, counts, total_no_filter))

    def cancel(self, name: Optional[str] = None, job_ids: Optional[Sequence[int]] = None, all: bool = False,
               all_users: bool = False, pool: Optional[str] = None, graceful: bool = False,
               graceful_timeout: Optional[int] = None, task: Optional[Union[str, int]] = None) -> str:
        self.calls.append(("cancel", {"job_ids": list(job_ids or []), "name": name}))
        for job in self.jobs():
            if (job_ids and job["job_id"] in job_ids) or (name and job["job_name"] == name) or all:
                if job["status"] not in TERMINAL:
                    (self.root / "jobs" / f"{job['job_id']}.cancel").touch()
        return self._request(None)

    def pool_apply(self, task: Any, pool_name: str, mode: Any, workers: Optional[int] = None,
                   _need_confirmation: bool = False) -> str:
        """The pool's workers are this machine: its setup runs once, here, per worker."""
        self.calls.append(("pool_apply", {"pool_name": pool_name, "workers": workers, "mode": mode.value}))
        self.controller = "up"
        config = task.to_yaml_config()
        self.pools[pool_name] = {"workers": workers, "config": config}
        for _ in range(workers or 1):
            setup = subprocess.run(["bash", "-c", config.get("setup") or ""], cwd=config["workdir"],
                                   capture_output=True)
            if setup.returncode != 0:
                return self._request(error=RuntimeError(f"setup of a worker of pool {pool_name} failed"))
        return self._request(None)

    def tail_logs(self, name: Optional[str] = None, job_id: Optional[int] = None, follow: bool = True,
                  controller: bool = False, refresh: bool = False, tail: Optional[int] = None,
                  tail_offset: Optional[int] = None, output_stream: Any = None, task: Optional[Union[str, int]] = None,
                  *, preload_content: bool = True) -> Optional[int]:
        self.calls.append(("tail_logs", {"job_id": job_id, "follow": follow, "tail": tail}))
        path = self.root / "machines" / f"{job_id}.log"
        lines = path.read_text().splitlines(keepends=True) if path.exists() else []
        (output_stream or sys.stdout).write("".join(lines[-tail:] if tail else lines))
        return 0

    # ------------------------------------------------------------ for tests

    def jobs(self) -> list[dict[str, Any]]:
        out = []
        for path in (self.root / "jobs").glob("*.json"):
            out.append(json.loads(path.read_text()))  # written whole by os.replace
        return sorted(out, key=lambda j: j["job_id"])

    def job(self, job_id: int) -> dict[str, Any]:
        return json.loads((self.root / "jobs" / f"{job_id}.json").read_text())

    def preempt(self, job_id: int) -> None:
        """The cloud takes the machine away (SIGKILL); SkyPilot recovers the job."""
        (self.root / "jobs" / f"{job_id}.preempt").touch()

    def kill_all(self) -> None:
        for pid_file in (self.root / "jobs").glob("*.pid"):
            try:
                os.killpg(int(pid_file.read_text()), signal.SIGKILL)
            except (ProcessLookupError, PermissionError, ValueError):
                pass
        for pgid_file in (self.root / "jobs").glob("*.pgid"):
            try:
                os.killpg(int(pgid_file.read_text()), signal.SIGKILL)
            except (ProcessLookupError, PermissionError, ValueError):
                pass

    def _next_id(self) -> int:
        with open(self.root / "counter", "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            fh.seek(0)
            last = int(fh.read() or 0)
            fh.seek(0)
            fh.truncate()
            fh.write(str(last + 1))
        return last + 1


def _record(job: dict[str, Any]) -> dict[str, Any]:
    end = job["end_at"] or time.time()
    return {"job_id": job["job_id"], "task_id": 0, "job_name": job["job_name"], "task_name": job["job_name"],
            "status": ManagedJobStatus(job["status"]), "failure_reason": job["failure_reason"],
            "submitted_at": job["submitted_at"], "start_at": job["start_at"], "end_at": job["end_at"],
            "recovery_count": job["recovery_count"], "resources": "1x[CPU:1]", "workspace": "default",
            "job_duration": end - job["start_at"] if job["start_at"] else 0.0}


def write_job(root: Path, job: dict[str, Any]) -> None:
    path = root / "jobs" / f"{job['job_id']}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(job))
    os.replace(tmp, path)


# ---------------------------------------------------------------- the "cloud"


class _Bucket:
    """The MOUNT_CACHED stand-in: a local folder, seeded from the bucket and uploaded to it."""

    def __init__(self, source: str | None, folder: Path):
        self.folder = folder
        self.sent: dict[str, tuple[int, int]] = {}
        self.client = None
        if source:
            import boto3

            _, _, rest = source.partition("://")
            self.bucket, _, prefix = rest.partition("/")
            self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
            self.client = boto3.client("s3")
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix):
                for obj in page.get("Contents", []):
                    local = folder / obj["Key"][len(self.prefix):]
                    local.parent.mkdir(parents=True, exist_ok=True)
                    local.write_bytes(self.client.get_object(Bucket=self.bucket, Key=obj["Key"])["Body"].read())
                    self.sent[str(local)] = _stamp(local)

    def upload(self) -> None:
        if self.client is None:
            return
        for path in self.folder.rglob("*"):
            if path.is_file() and self.sent.get(str(path)) != _stamp(path):
                stamp = _stamp(path)
                key = self.prefix + str(path.relative_to(self.folder))
                self.client.put_object(Bucket=self.bucket, Key=key, Body=path.read_bytes())
                self.sent[str(path)] = stamp


def _stamp(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns


def supervise(root: Path, job_id: int) -> None:
    jobs = root / "jobs"
    path = jobs / f"{job_id}.json"
    job = json.loads(path.read_text())

    def update(**changes: Any) -> None:
        job.update(changes)
        write_job(root, job)

    def marker(kind: str) -> bool:
        return (jobs / f"{job_id}.{kind}").exists()

    time.sleep(0.2)
    if marker("cancel"):
        update(status="CANCELLED", end_at=time.time())
        return
    update(status="STARTING")
    time.sleep(0.2)
    while job["stuck"] and not marker("cancel"):
        time.sleep(0.1)
    if marker("cancel"):
        update(status="CANCELLED", end_at=time.time())
        return
    if job["fail"]:
        update(status=job["fail"].removesuffix("_driver"), failure_reason=failure_reason(job["fail"], job_id, 1),
               end_at=time.time())
        return
    bucket = _Bucket(job["bucket"], root / "machines" / str(job_id))
    bucket.folder.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **job["env"], "STUDYC_RESULTS_DIR": str(bucket.folder), "STUDYC_FAKE_JOB": str(job_id)}
    recovery = job["recovery"]
    restarts = 0
    machine_log = open(root / "machines" / f"{job_id}.log", "ab")  # what `sky jobs logs` shows
    if job["setup"]:
        setup = subprocess.run(["bash", "-c", job["setup"]], cwd=job["workdir"], env=env, stdout=machine_log,
                               stderr=subprocess.STDOUT)
        if setup.returncode != 0:
            update(status="FAILED_SETUP", failure_reason=failure_reason("FAILED_SETUP", job_id, setup.returncode),
                   end_at=time.time())
            return
    while True:
        update(status="RUNNING", start_at=job["start_at"] or time.time())
        proc = subprocess.Popen(["bash", "-c", job["run"]], cwd=job["workdir"], env=env, start_new_session=True,
                                stdout=machine_log, stderr=subprocess.STDOUT)
        (jobs / f"{job_id}.pgid").write_text(str(proc.pid))
        preempted = False
        while proc.poll() is None:
            time.sleep(0.1)
            bucket.upload()
            if marker("cancel"):
                update(status="CANCELLING")
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait()
                bucket.upload()
                update(status="CANCELLED", end_at=time.time())
                return
            if marker("preempt"):
                (jobs / f"{job_id}.preempt").unlink()
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                preempted = True
        bucket.upload()
        code = proc.returncode
        if preempted or code in recovery.get("recover_on_exit_codes", []) or (
                code != 0 and restarts < recovery.get("max_restarts_on_errors", 0)):
            restarts += 0 if preempted else 1
            update(status="RECOVERING", recovery_count=job["recovery_count"] + 1)
            time.sleep(0.5)
            continue
        if code == 0:
            update(status="SUCCEEDED", end_at=time.time())
        else:
            update(status="FAILED", failure_reason=failure_reason("FAILED", job_id, code), end_at=time.time())
        return


def run_studyc(state: Path, args: list[str]) -> None:
    """The real studyc CLI, with this fake standing in for SkyPilot's client."""
    from studyc.cli import main
    from studyc.runtime import sky_executor

    fake = FakeSky(state)
    sky_executor.SkyClient = lambda: fake  # the boundary: everything else is studyc's own
    sky_executor.CloudOptions = functools.partial(sky_executor.CloudOptions, refresh_s=0.2)  # tests need no 10 s polls
    main(args, prog_name="studyc")


if __name__ == "__main__":
    if sys.argv[1] == "supervise":
        supervise(Path(sys.argv[2]), int(sys.argv[3]))
    elif sys.argv[1] == "studyc":
        run_studyc(Path(sys.argv[2]), sys.argv[4:])
