"""The run protocol: everything studyc and a run process agree on, in one place.

A run is a process. studyc hands it its resolved config as a JSON file named by
``STUDYC_CONFIG`` and a directory of its own named by ``STUDYC_RUN_DIR``; the run appends
metrics as JSON lines to ``metrics.jsonl`` there, and its output goes to ``log.txt``. On
the cloud the same files are written by the task's script (``cloud_script``) into the
results bucket. This module is ground: it imports nothing of studyc, so the SDK a
trainer imports, the compiler that writes cloud tasks and the runtime share it cheaply.
"""

from __future__ import annotations

import shlex
from typing import Any

# ---------------------------------------------------------------- environment variables
CONFIG = "STUDYC_CONFIG"  # path of the run's resolved config (JSON)
CONFIG_JSON = "STUDYC_CONFIG_JSON"  # the config itself, in a cloud task (its script writes $STUDYC_CONFIG)
RUN_DIR = "STUDYC_RUN_DIR"  # the run's own directory: metrics, log, checkpoints
RUN_ID = "STUDYC_RUN_ID"
STUDY = "STUDYC_STUDY"
ARM = "STUDYC_ARM"
STAGE = "STUDYC_STAGE"
SEED = "STUDYC_SEED"
ATTEMPT = "STUDYC_ATTEMPT"
RESUME = "STUDYC_RESUME"  # "1" when the attempt continues from the run's checkpoints
CPUS = "STUDYC_CPUS"  # the CPU cores the run was packed onto (OMP/MKL threads follow it)
RESULTS_DIR = "STUDYC_RESULTS_DIR"  # a cloud task's mounted results bucket
SOURCE_RUN_DIR = "STUDYC_SOURCE_RUN_DIR"  # an evaluation run: the directory of the run it evaluates
WANDB_PREFIX = "STUDYC_WANDB_"  # tracking.wandb settings passed to the run
HOME = "STUDYC_HOME"  # studyc's own store directory (not passed to runs)

# ---------------------------------------------------------------- files in a run directory
METRICS_FILE = "metrics.jsonl"
LOG_FILE = "log.txt"
CONFIG_FILE = "config.json"
EXIT_CODE_FILE = "exit_code"  # the command's exit status, written by the shell around it (local and cloud)
CHECKPOINTS_DIR = "checkpoints"

# ---------------------------------------------------------------- timeouts
# Locally a run is stopped only by the study's own `resources.timeout`: a busy or slow
# machine must not turn healthy runs into failures. A cloud job bills until it ends, so
# without a `timeout` it gets a generous default from the estimate.
CLOUD_TIMEOUT_FACTOR = 3.0
CLOUD_MIN_TIMEOUT_S = 60.0


def timeout_s(resources: dict[str, Any], est_hours: float, remote: bool) -> float | None:
    """Seconds after which a run is stopped as 'timeout'; None: never (local, no `timeout`)."""
    hours = resources.get("timeout")
    if hours:
        return hours * 3600
    if not remote:
        return None
    return max(CLOUD_MIN_TIMEOUT_S, est_hours * 3600 * CLOUD_TIMEOUT_FACTOR)


def timeout_note(limit_s: float, elapsed_s: float) -> str:
    """The line studyc adds to a run's log when it stops the run for its timeout."""
    return (f"studyc: stopped by the timeout after {_duration(elapsed_s)} "
            f"(limit {_duration(limit_s)}, resources.timeout)")


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


# ---------------------------------------------------------------- the environment builders
def identity_env(study: str, run: Any) -> dict[str, str]:
    """Which run this is (``run``: a RunPlan): the same locally and on the cloud."""
    return {STUDY: study, RUN_ID: run.id, ARM: run.arm, STAGE: run.stage, SEED: str(run.seed)}


def local_env(study: str, run: Any, run_dir: Any, config_path: Any, resume: bool) -> dict[str, str]:
    """The protocol's variables for a run on this machine (paths absolute)."""
    return {**identity_env(study, run), CONFIG: str(config_path.resolve()), RUN_DIR: str(run_dir.resolve()),
            RESUME: "1" if resume else "0"}


def cloud_env(study: str, run: Any, config_json: str, results_dir: str | None) -> dict[str, str]:
    """The protocol's variables for a cloud task; its script (``cloud_script``) derives the
    run directory and the config file from them on the cloud machine."""
    env = {**identity_env(study, run), CONFIG_JSON: config_json}
    if results_dir:
        env[RESULTS_DIR] = results_dir
    return env


# A cloud task's log is written to the machine's own disk and copied into the run directory
# this often: a file on a MOUNT_CACHED bucket is uploaded only once it is closed.
LOG_SYNC_S = 30


def cloud_script(command: str, timeout: float, source: str | None = None) -> str:
    """A cloud task's ``run:``: the run protocol (config file, run directory, log, exit
    status) around the run's command, which is shell-quoted once more for ``bash -c``.
    ``source``: the id of the run an evaluation run evaluates (its directory is in the
    same bucket). It ends with ``(exit "$code")``, not ``exit``, so the block SkyPilot
    appends (waiting until a cached bucket mount has uploaded everything) still runs, and
    sees the run's exit status."""
    results = f"${{{RESULTS_DIR}:-$HOME/studyc-results}}/${STUDY}"
    log = f'"${RUN_DIR}/{LOG_FILE}"'
    return "\n".join([
        f'export {RUN_DIR}="{results}/${RUN_ID}"',
        f'export {CONFIG}="${RUN_DIR}/{CONFIG_FILE}"',
        f'mkdir -p "${RUN_DIR}"',
        *([f'export {SOURCE_RUN_DIR}="{results}/{source}"'] if source else []),
        f"printf '%s\\n' \"${CONFIG_JSON}\" > \"${CONFIG}\"",
        f'studyc_log="${{TMPDIR:-/tmp}}/studyc-${RUN_ID}.log"',
        f'cp {log} "$studyc_log" 2>/dev/null || : > "$studyc_log"',
        # The copier's sleep is killed with it, so no stray process holds the job's output open.
        f"( trap 'kill $s 2>/dev/null; exit 0' TERM; while :; do sleep {LOG_SYNC_S} & s=$!; wait $s; "
        f'cp "$studyc_log" {log}; done ) &',
        "studyc_sync=$!",
        f"timeout --kill-after=60 {round(timeout)} bash -c {shlex.quote(command)} 2>&1 "
        '| tee -a "$studyc_log"',
        "code=${PIPESTATUS[0]}",
        'kill "$studyc_sync" 2>/dev/null',
        f'cp "$studyc_log" {log}',
        f'printf \'%s\\n\' "$code" > "${RUN_DIR}/{EXIT_CODE_FILE}"',
        '(exit "$code")',
        "",
    ])
