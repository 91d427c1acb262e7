"""The MLflow store: where it is, its experiments, and finding runs by their tags.

Import-light on purpose (mlflow's client only, no torch): `rrn ui` and `rrn report`
resolve the store and look runs up through this module without loading the
training stack that orchestration/tracking/sweep_run.py needs for its hooks.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlparse

from mlflow import MlflowClient
from mlflow.entities import Run, ViewType
from mlflow.exceptions import MlflowException

from orchestration.names import EXPERIMENT_KIND_TRAINING, TAG_EXPERIMENT_KIND, TAG_PARENT
from orchestration.storage.filesystems import default_tracking_uri
from rrn_core.errors import UserError

#: Free space a local (sqlite) store's folder needs before a run or sweep starts: a
#: new database is about 1 MB, every run adds its metrics, artifacts go beside it.
MIN_STORE_FREE_BYTES = 32 << 20


class StoreError(UserError):
    """The MLflow store cannot be created or written; the message names its file."""


def resolve_tracking_uri(uri: str | None) -> str:
    """Turn a space file's `tracking.uri` into an absolute URI every process agrees on.

    Ray workers run in their own working directories, so a relative sqlite path would
    silently open a different, empty store in each trial: paths become absolute here,
    in the driver. A bare `*.db` path is read as a sqlite file.
    """
    if uri is None:
        uri = default_tracking_uri()
    uri = str(uri).strip()
    scheme = urlparse(uri).scheme.lower()
    if scheme.startswith("sqlite"):
        raw = uri.split(":///", 1)[1] if ":///" in uri else ""
        if not raw or raw == ":memory:":
            raise ValueError(f"tracking uri {uri!r}: a sqlite store needs a file path")
        path = Path(raw).expanduser().resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{path}"
    if scheme == "file":
        path = Path(urlparse(uri).path).expanduser().resolve()
        path.mkdir(parents=True, exist_ok=True)
        return path.as_uri()
    if scheme == "" or (len(scheme) == 1 and ":\\" in uri):  # a plain path
        path = Path(uri).expanduser().resolve()
        if path.suffix == ".db":
            path.parent.mkdir(parents=True, exist_ok=True)
            return f"sqlite:///{path}"
        path.mkdir(parents=True, exist_ok=True)
        return path.as_uri()
    return uri  # http(s)://, postgresql://, databricks, ...: the server decides


def open_client(tracking_uri: str) -> MlflowClient:
    """An MlflowClient on `tracking_uri` (resolved), a new sqlite database made whole
    or not at all (`create_sqlite_store`)."""
    db = sqlite_path(tracking_uri)
    if db is not None and not db.exists():
        create_sqlite_store(db)
    return MlflowClient(tracking_uri=tracking_uri)


def create_sqlite_store(db: Path) -> None:
    """Create MLflow's tables in a scratch file beside `db`, then link it into place.

    MLflow builds a new database table by table: a full disk or a kill midway left a
    half-made `mlflow.db` that every later command failed on. The scratch file is
    removed whatever happens; `os.link` never replaces a database another process
    created meanwhile (that one is used as it is).
    """
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    scratch = db.with_name(f".{db.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.creating")
    try:
        store = SqlAlchemyStore(f"sqlite:///{scratch}", str(local_artifact_root(f"sqlite:///{db}")))
        store.engine.dispose()
        os.link(scratch, db)
    except FileExistsError:
        pass
    except Exception as err:  # noqa: BLE001 - any failure: no store, one message
        reason = str(getattr(err, "orig", None) or err).strip().splitlines()[0][:200]
        raise StoreError(f"{db}: cannot create the MLflow store ({type(err).__name__}: {reason}); "
                         "nothing was written") from None
    finally:
        for suffix in ("", "-journal", "-wal", "-shm"):
            Path(f"{scratch}{suffix}").unlink(missing_ok=True)


def sqlite_path(tracking_uri: str) -> Path | None:
    """The database file of a sqlite store, or None for any other store."""
    if not tracking_uri.lower().startswith("sqlite"):
        return None
    return Path(tracking_uri.split(":///", 1)[1])


def local_artifact_root(tracking_uri: str) -> Path | None:
    """Where a local (sqlite) store keeps artifacts: `mlartifacts/` next to the database.

    MLflow's own default for a SQL store is `./mlruns` relative to whichever process
    created the experiment, which scatters artifacts and hides them from `mlflow ui`
    started elsewhere. Pinning the folder next to the db (= `$RRN_HOME/mlartifacts`
    for the default store) makes the store self-contained and servable by `rrn ui`.
    """
    db = sqlite_path(tracking_uri)
    return None if db is None else db.parent / "mlartifacts"


def ensure_experiment(client: MlflowClient, tracking_uri: str, name: str) -> str:
    """Experiment id by name, created (or restored from the bin) when needed.

    Every experiment we write to is marked as model training: without the tag the
    MLflow 3 UI opens it in its GenAI (traces) view instead of the runs table.
    """
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            client.restore_experiment(exp.experiment_id)
        if exp.tags.get(TAG_EXPERIMENT_KIND) != EXPERIMENT_KIND_TRAINING:
            client.set_experiment_tag(exp.experiment_id, TAG_EXPERIMENT_KIND,
                                      EXPERIMENT_KIND_TRAINING)
        return exp.experiment_id
    root = local_artifact_root(tracking_uri)
    location = None
    if root is not None:
        root.mkdir(parents=True, exist_ok=True)
        location = root.resolve().as_uri()
    try:
        return client.create_experiment(name, artifact_location=location,
                                        tags={TAG_EXPERIMENT_KIND: EXPERIMENT_KIND_TRAINING})
    except MlflowException:
        # another process created it between our lookup and create
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


def search_all_runs(client: MlflowClient, experiment_ids: list[str], filter_string: str = "",
                    order_by: list[str] | None = None) -> list[Run]:
    """Every matching active run: MLflow pages results, a sweep can exceed one page."""
    runs: list[Run] = []
    token: str | None = None
    while True:
        page = client.search_runs(experiment_ids, filter_string, ViewType.ACTIVE_ONLY,
                                  max_results=1000, order_by=order_by, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def _eq(key: str, value: str) -> str | None:
    """A tag equality clause, or None when the value cannot be quoted safely."""
    if "'" in value or "\\" in value:
        return None
    return f"tags.`{key}` = '{value}'"


def find_runs_by_tags(client: MlflowClient, experiment_ids: list[str],
                      tags: Mapping[str, str]) -> list[Run]:
    """Runs whose tags equal `tags`, newest first (filters server-side where possible)."""
    clauses = [c for c in (_eq(k, v) for k, v in tags.items()) if c]
    runs = search_all_runs(client, experiment_ids, " and ".join(clauses),
                           order_by=["attributes.start_time DESC"])
    return [r for r in runs if all(r.data.tags.get(k) == v for k, v in tags.items())]


def child_runs(client: MlflowClient, parent: Run) -> list[Run]:
    """The trials' runs of one sweep's parent run."""
    return find_runs_by_tags(client, [parent.info.experiment_id], {TAG_PARENT: parent.info.run_id})
