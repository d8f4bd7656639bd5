"""Results of cloud runs: the study's bucket (``cloud.results``) and, optionally, W&B.

On the cloud machine the bucket is mounted and each run writes its run directory there,
``<cloud.results>/<study>/<run id>/`` (metrics.jsonl, log.txt, exit_code, config.json,
and checkpoints/ to resume from). studyc copies the files at the top of that directory
into the run's local directory in the store, where the local runtime would have left
them, so following a run live, classifying its end and the report work as they do locally.

boto3 (s3://; endpoint, region and credentials from the usual AWS settings, e.g.
``AWS_ENDPOINT_URL`` for an S3-compatible server) and google-cloud-storage (gs://) are
imported only here, when a study has a results bucket.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable, Protocol

from studyc.errors import RunError

CLOUD_HINT = "install the cloud extra: pip install 'studyc[cloud]'"


class ResultsError(Exception):
    """The bucket could not be read or written (credentials, network, permissions)."""


class _Objects(Protocol):
    def files(self, prefix: str) -> dict[str, str]: ...  # file name -> etag, at the top of prefix

    def read(self, key: str) -> bytes: ...

    def delete(self, prefix: str) -> int: ...


def split_url(url: str) -> tuple[str, str, str]:
    """``s3://bucket/some/path`` -> ("s3", "bucket", "some/path")."""
    scheme, _, rest = url.partition("://")
    bucket, _, path = rest.partition("/")
    return scheme, bucket, path.strip("/")


class _S3:
    """An S3 bucket, or an S3-compatible one (``client`` made by SkyPilot for its scheme)."""

    def __init__(self, bucket: str, client: Any = None):
        try:
            import boto3
            from botocore.exceptions import BotoCoreError, ClientError
        except ImportError:
            raise RunError("reading s3:// results needs boto3, which is not installed", CLOUD_HINT) from None
        self.bucket = bucket
        self.client = client or boto3.client("s3")
        self.errors = (BotoCoreError, ClientError)

    def files(self, prefix: str) -> dict[str, str]:
        out = {}
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix,
                                                                               Delimiter="/"):
                for obj in page.get("Contents", []):
                    out[obj["Key"][len(prefix):]] = obj["ETag"]
        except self.errors as exc:
            raise ResultsError(f"s3://{self.bucket}/{prefix}: {exc}") from None
        return out

    def read(self, key: str) -> bytes:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except self.errors as exc:
            raise ResultsError(f"s3://{self.bucket}/{key}: {exc}") from None

    def delete(self, prefix: str) -> int:
        deleted = 0
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
                keys = [{"Key": obj["Key"]} for obj in page.get("Contents", [])]
                if keys:  # a page holds at most 1000 keys, as many as one delete_objects takes
                    self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": keys, "Quiet": True})
                    deleted += len(keys)
        except self.errors as exc:
            raise ResultsError(f"s3://{self.bucket}/{prefix}: {exc}") from None
        return deleted


class _GCS:
    def __init__(self, bucket: str):
        try:
            from google.api_core.exceptions import GoogleAPIError
            from google.cloud import storage
        except ImportError:
            raise RunError("reading gs:// results needs google-cloud-storage, which is not installed",
                           "pip install google-cloud-storage (and authenticate: gcloud auth application-default login)"
                           ) from None
        self.client = storage.Client()
        self.bucket = self.client.bucket(bucket)
        self.errors = (GoogleAPIError,)

    def files(self, prefix: str) -> dict[str, str]:
        try:
            blobs = self.client.list_blobs(self.bucket, prefix=prefix, delimiter="/")
            return {blob.name[len(prefix):]: blob.etag for blob in blobs}
        except self.errors as exc:
            raise ResultsError(f"gs://{self.bucket.name}/{prefix}: {exc}") from None

    def read(self, key: str) -> bytes:
        try:
            return self.bucket.blob(key).download_as_bytes()
        except self.errors as exc:
            raise ResultsError(f"gs://{self.bucket.name}/{key}: {exc}") from None

    def delete(self, prefix: str) -> int:
        try:
            blobs = list(self.client.list_blobs(self.bucket, prefix=prefix))
            self.bucket.delete_blobs(blobs)
        except self.errors as exc:
            raise ResultsError(f"gs://{self.bucket.name}/{prefix}: {exc}") from None
        return len(blobs)


def s3_compatible_client(url: str) -> Any:
    """A boto3 client for an S3-compatible store (``r2://``, ``nebius://``, ...), made by
    SkyPilot the way it mounts the same URL on the cloud machine: its endpoint and
    credentials profile (e.g. ~/.cloudflare/ for R2), not AWS_ENDPOINT_URL, which only this
    machine would see."""
    try:
        from sky.data import storage
    except ImportError:
        raise RunError(f"reading {url} needs SkyPilot, which is not installed", CLOUD_HINT) from None
    store = storage.StoreType.find_s3_compatible_config_by_prefix(url)
    if store is None:
        raise RunError(f"SkyPilot knows no object store for {url.partition('://')[0]}:// URLs",
                       "use s3://, gs:// or a scheme SkyPilot mounts (r2://, nebius://, cw://, ...)")
    try:
        return storage.StoreType._get_s3_compatible_config(store.value).client_factory(None)
    except Exception as exc:  # credentials or SDK missing: SkyPilot's own message says which
        raise RunError(f"could not open {url}: {exc}", f"see `sky check` for {store.value}") from None


class Results:
    """The run directories of one study in its results bucket."""

    def __init__(self, url: str, study: str):
        scheme, bucket, path = split_url(url)
        self.url = url
        self.objects: _Objects = (_S3(bucket) if scheme == "s3" else _GCS(bucket) if scheme == "gs"
                                  else _S3(bucket, s3_compatible_client(url)))
        self.base = f"{path}/{study}/" if path else f"{study}/"
        self._seen: dict[tuple[str, str], str] = {}  # (run id, file) -> etag last copied

    def check(self) -> None:
        """Fail early, before anything launches, when the bucket cannot be read."""
        try:
            self.objects.files(self.base)
        except ResultsError as exc:
            raise RunError(f"cannot read the results bucket {self.url}: {exc}",
                           "check the credentials (`sky check`, `aws configure`) and that the bucket exists") from None

    def pull(self, run_id: str, local_dir: Path) -> bool:
        """Copy the run's files (not its subfolders: checkpoints stay in the bucket) that
        changed since the last pull; True if any did. Each file is replaced whole, so
        readers never see half of one."""
        prefix = f"{self.base}{run_id}/"
        changed = False
        for name, etag in self.objects.files(prefix).items():
            if not name or self._seen.get((run_id, name)) == etag:
                continue
            data = self.objects.read(prefix + name)
            local_dir.mkdir(parents=True, exist_ok=True)
            tmp = local_dir / f".{name}.part"
            tmp.write_bytes(data)
            os.replace(tmp, local_dir / name)
            self._seen[(run_id, name)] = etag
            changed = True
        return changed

    def clear(self, run_id: str) -> int:
        """Remove the run's files from the bucket, so a fresh attempt starts clean (its
        metrics are appended to metrics.jsonl)."""
        for key in [k for k in list(self._seen) if k[0] == run_id]:  # list(): other threads pull meanwhile
            self._seen.pop(key, None)
        return self.objects.delete(f"{self.base}{run_id}/")


# ------------------------------------------------------------------ W&B


def wandb_series(project: str, entity: str | None, group: str, run_id: str) -> list[dict[str, Any]] | None:
    """The metric records of the run's latest W&B run (as ``studyc.log`` wrote them:
    ``studyc.run_id`` in its config, in the study's group), None if W&B has none.
    Needs network and a W&B login. W&B drops NaN and inf, so a diverged run can read as
    finite here: the bucket stays the source of truth."""
    path = f"{entity}/{project}" if entity else project
    for run in import_wandb().Api().runs(path, filters={"group": group}, order="-created_at"):
        if (run.config.get("studyc") or {}).get("run_id") == run_id:
            return history_records(run.scan_history())
    return None


def import_wandb() -> Any:
    try:
        import wandb
    except ImportError:
        raise RunError("reading results from W&B needs wandb, which is not installed",
                       "pip install 'studyc[wandb]'") from None
    return wandb


def history_records(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """W&B history rows (``_step``, ``_timestamp``, W&B's own ``_``-keys, the logged
    values) as metrics.jsonl records (``t``, ``step``, the numbers)."""
    records = []
    for row in rows:
        record: dict[str, Any] = {}
        if row.get("_timestamp") is not None:
            record["t"] = round(float(row["_timestamp"]), 3)
        if row.get("_step") is not None:
            record["step"] = int(row["_step"])
        record.update({key: value for key, value in row.items()
                       if not key.startswith("_") and isinstance(value, (int, float)) and not isinstance(value, bool)})
        if len(record) > ("t" in record) + ("step" in record):
            records.append(record)
    return records


def write_metrics(path: Path, records: list[dict[str, Any]]) -> None:
    tmp = path.with_name(f".{path.name}.part")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    os.replace(tmp, path)
