"""W&B mirroring of ``studyc.log``.

studyc (the scheduler) passes a study's ``tracking.wandb`` settings to each run in
``STUDYC_WANDB_*`` environment variables; the run process itself opens its W&B run on its
first ``studyc.log`` call. wandb is imported only then, so runs of studies without
tracking never load it.
"""

from __future__ import annotations

import importlib.util
import json
import netrc
import os
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from studyc import protocol

if TYPE_CHECKING:  # the run process imports this module: keep it light
    from studyc.spec.model import Study

PREFIX = protocol.WANDB_PREFIX


@lru_cache(maxsize=8)
def unavailable(mode: str | None) -> str | None:
    """Why runs cannot log to W&B on this machine, or None when they can. Checked by
    studyc before launching, so a missing key skips tracking instead of failing runs."""
    mode = mode or os.environ.get("WANDB_MODE")
    if mode == "disabled":
        return "tracking.wandb.mode is disabled"
    if importlib.util.find_spec("wandb") is None:
        return "wandb is not installed (pip install 'studyc[wandb]')"
    if mode in ("offline", "dryrun") or os.environ.get("WANDB_API_KEY"):
        return None
    host = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai").split("://")[-1].split("/")[0]
    try:
        if netrc.netrc().authenticators(host):
            return None
    except (OSError, netrc.NetrcParseError):
        pass
    return "no W&B credentials (run `wandb login`, set WANDB_API_KEY, or set tracking.wandb.mode: offline)"


def group(study: "Study", stage: str) -> str:
    """The W&B group a run of ``stage`` logs to: the stage's own, else the study's."""
    wb = study.tracking.wandb
    return (wb.groups.get(stage) if wb else None) or (wb.group if wb else None) or study.study


def run_env(study: "Study", arm: str, stage: str, seed: int, attempt: int) -> dict[str, str]:
    """The environment that tells a run where to log in W&B (empty without tracking, or
    when W&B is unavailable here)."""
    wb = study.tracking.wandb
    if wb is None or unavailable(wb.mode):
        return {}
    env = {
        PREFIX + "PROJECT": wb.project,
        PREFIX + "GROUP": group(study, stage),
        PREFIX + "TAGS": json.dumps(list(dict.fromkeys([*study.tags, *wb.tags]))),
        PREFIX + "NAME": f"{arm}-s{seed}" + (f"-a{attempt}" if attempt > 1 else ""),
        PREFIX + "JOB_TYPE": stage,
        protocol.ATTEMPT: str(attempt),
    }
    if wb.entity:
        env[PREFIX + "ENTITY"] = wb.entity
    if wb.mode:
        env[PREFIX + "MODE"] = wb.mode
    return env


def enabled() -> bool:
    return bool(os.environ.get(PREFIX + "PROJECT"))


def init_from_env(config: dict[str, Any]) -> Any:
    """Open this process's W&B run from the ``STUDYC_WANDB_*`` settings."""
    import wandb

    env = os.environ
    names = {"run_id": protocol.RUN_ID, "arm": protocol.ARM, "stage": protocol.STAGE, "seed": protocol.SEED,
             "study": protocol.STUDY, "attempt": protocol.ATTEMPT}
    meta = {k: env[name] for k, name in names.items() if name in env}
    return wandb.init(
        project=env[PREFIX + "PROJECT"],
        entity=env.get(PREFIX + "ENTITY"),
        group=env.get(PREFIX + "GROUP"),
        job_type=env.get(PREFIX + "JOB_TYPE"),
        name=env.get(PREFIX + "NAME"),
        tags=json.loads(env.get(PREFIX + "TAGS", "[]")),
        mode=env.get(PREFIX + "MODE"),  # None: wandb's own default (WANDB_MODE, login state)
        config={**config, "studyc": meta},
        dir=None if "WANDB_DIR" in env else env.get(protocol.RUN_DIR),  # beside the run's own files
    )
