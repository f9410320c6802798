"""MLflow tracking: where runs go, what each run holds, and that every run ends (FAILED with its traceback on error).

Uses `MlflowClient` with batched writes rather than the fluent API: a `log_batch` per step of a run instead of one
request per value (bench/tracking.py: a trial's 55 params and 10 metrics cost ~6x less than the fluent API on sqlite,
~9x less on a server), and no process-global active run, so trials in threads or other processes cannot end up
under the wrong parent.

Failures: on a tracking server, MLflow's REST client already retries every request with exponential backoff
(MLFLOW_HTTP_REQUEST_MAX_RETRIES=7, MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR=2: about 4 minutes), which rides out a server
restart (tests/test_tracking_server.py), so flowork adds no HTTP retry of its own; `retrying` covers what that does
not: races between parallel writers on one store. Nothing flowork logs carries a secret (`redact`, `scrub`).
"""

from __future__ import annotations

import functools
import logging
import math
import os
import re
import subprocess
import traceback
from collections.abc import Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from flowork.errors import FloworkError

log = logging.getLogger("flowork.tracking")
REDACTED = "***"
# A name looks like a credential when, split into words (snake_case, kebab-case, camelCase, dotted), it contains one
# of these anywhere (PGPASSWORD, aws_secret_access_key, GOOGLE_APPLICATION_CREDENTIALS)...
SECRET_WORDS = re.compile(r"passw(or)?d|secret|credential|passphrase|connection_?string", re.I)
# ...or one of these as a whole word (db_pass, sas_token, basic_auth: not bypass, tokenizer, author)...
SECRET_TOKENS = {"pass", "pwd", "token", "auth", "authorization", "sas", "apikey"}
# ...or ends in `key` (api_key, accessKey, storage_options.key, AZURE_STORAGE_KEY: not keyboard, monkey, key_column).
SECRET_LAST = {"key", "keys"}
# The shell's working directories: "pwd" reads as a password, but hiding them would mask every project path logged
SHELL_PATHS = {"PWD", "OLDPWD"}
MIN_ENV_SECRET = 6  # shorter values of secret-looking env vars are not scrubbed from text: they would mangle it


@functools.lru_cache(maxsize=4096)
def looks_secret(name: str) -> bool:
    """Whether a config key or environment variable name looks like it holds a credential."""
    words = [w for w in re.split(r"[^a-z0-9]+", re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower()) if w]
    return bool(
        SECRET_WORDS.search("_".join(words))
        or SECRET_TOKENS.intersection(words)
        or (words and words[-1] in SECRET_LAST)
    )


def tracking_uri(uri: str | None, root: str) -> str:
    """Explicit config first, then $MLFLOW_TRACKING_URI, then an embedded sqlite store in the project."""
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path(root, 'mlflow.db')}"


def redact(node: Any, secrets: list[str] | None = None) -> Any:
    """A copy of a config container with the values of secret-looking keys (password, token, key, ...) replaced,
    and every string scrubbed (`scrub`)."""
    secrets = env_secrets() if secrets is None else secrets
    if isinstance(node, Mapping):
        return {k: REDACTED if looks_secret(str(k)) else redact(v, secrets) for k, v in node.items()}
    if isinstance(node, list):
        return [redact(v, secrets) for v in node]
    return scrub(node, secrets) if isinstance(node, str) else node


def redact_overrides(overrides: Iterable[str]) -> list[str]:
    """Command-line overrides as written to files people read and share (best.yaml, the leaderboard, a trial's
    overrides.yaml): a secret-looking key's value replaced, credentials in any other value scrubbed."""
    secrets = env_secrets()
    out = []
    for override in overrides:
        key, is_set, _ = override.partition("=")
        secret = is_set and looks_secret(key.rsplit(".", 1)[-1])
        out.append(f"{key}={REDACTED}" if secret else scrub(override, secrets))
    return out


def redact_job_files(meta: Path, overrides: list[str]) -> None:
    """Hydra's record of a single run (`<run dir>/.hydra/`: overrides.yaml, config.yaml, hydra.yaml), written before
    the job starts, rewritten without the command line's credentials as a sweep writes its own files."""
    from omegaconf import OmegaConf

    hidden = {o: r for o, r in zip(overrides, redact_overrides(overrides), strict=True) if o != r}

    def hide(node: Any) -> Any:
        if isinstance(node, Mapping):
            return {k: hide(v) for k, v in node.items()}
        if isinstance(node, list):
            return [hide(v) for v in node]
        if isinstance(node, str):
            for original, redacted in hidden.items():  # override lists and hydra.job.override_dirname
                node = node.replace(original.lstrip("+~"), redacted.lstrip("+~"))
        return node

    for name in ("overrides.yaml", "config.yaml", "hydra.yaml"):
        path = meta / name
        if not path.is_file():
            continue
        before = OmegaConf.to_container(OmegaConf.load(path), resolve=False)  # interpolations stay as written
        after = redact(hide(before))
        if after != before:
            OmegaConf.save(OmegaConf.create(after), path)


def flatten(node: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """`{"a": {"b": 1}}` -> `{"a.b": "1"}` (MLflow params: values cut at MLflow's 6000 characters)."""
    out: dict[str, str] = {}
    for key, value in node.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = str(value)[:6000]
    return out


@functools.lru_cache(maxsize=8)
def git_state(root: str) -> dict[str, str]:
    """Commit and dirty flag of the project (not of flowork's install) when it is a git checkout.

    Read once per process: a sweep's trials share the checkout, and two `git` calls per trial add up."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {}
    return {"mlflow.source.git.commit": commit, "git.dirty": str(bool(dirty)).lower()}


REMOTE_SCHEMES = ("http", "https", "databricks", "databricks-uc", "uc")


def default_artifact_location(configured: str | None, uri: str, root: str) -> str | None:
    """Where a new experiment's artifacts go: `tracking.artifact_location` when set; for a tracking server, the
    server's own choice (None: its --artifacts-destination / --default-artifact-root, so every machine sees them);
    for a store on this machine (sqlite, a database URL), `<project>/mlartifacts`."""
    if configured:
        return configured
    if uri.split("://", 1)[0].lower() in REMOTE_SCHEMES:
        return None
    return f"file://{Path(root).resolve()}/mlartifacts"


def tracker_for(tracking: Any, root: str) -> Tracker:
    """The Tracker of a config's `tracking` node (uri, experiment, artifact_location) for a project root."""
    return get_tracker(*tracker_key(tracking, root))


def tracker_key(tracking: Any, root: str) -> tuple[str, str, str | None]:
    """(store URI, experiment, artifact location) of a config's `tracking` node, checked."""
    if not str(tracking.experiment or "").strip():
        raise FloworkError(
            "tracking.experiment is empty",
            where="conf/config.yaml, key `tracking.experiment`",
            fix="name the MLflow experiment the runs go to, e.g. tracking.experiment=temperature",
        )
    uri = tracking_uri(tracking.uri, root)
    return uri, str(tracking.experiment), default_artifact_location(tracking.artifact_location, uri, root)


def get_tracker(uri: str, experiment: str, artifact_location: str | None = None) -> Tracker:
    """The process's Tracker for this store and experiment: a sweep worker runs many trials, and a new MLflow
    client costs ~0.4 s (store checks) where a cached one costs nothing."""
    key = (uri, experiment, artifact_location)
    if key not in _TRACKERS:
        _TRACKERS[key] = Tracker(uri, experiment, artifact_location)
    return _TRACKERS[key]


RETRYABLE = ("database is locked", "UNIQUE constraint failed", "Deadlock", "could not serialize")
# what MLflow's REST client says once its own retries are spent (requests/urllib3 messages)
UNREACHABLE = ("Max retries exceeded", "Failed to establish a new connection", "Connection refused", "timed out")


def retrying(fn: Any, *args: Any, attempts: int = 5, **kwargs: Any) -> Any:
    """Call an MLflow write, retrying the races parallel workers hit on a shared store: sqlite's "database is
    locked", and two workers inserting the same dataset row at once (the retry finds it and reuses it).
    A tracking server still unreachable after MLflow's own retries becomes a FloworkError that says so."""
    import random
    import time

    for attempt in range(attempts):
        try:
            return fn(*args, **kwargs)
        except Exception as e:
            if any(text in str(e) for text in UNREACHABLE):
                raise unreachable(e) from None
            if attempt == attempts - 1 or not any(text in str(e) for text in RETRYABLE):
                raise
            time.sleep(0.05 * 2**attempt * (1 + random.random()))


def unreachable(error: Exception) -> FloworkError:
    from mlflow.environment_variables import MLFLOW_HTTP_REQUEST_MAX_RETRIES

    return FloworkError(
        f"the MLflow tracking server did not answer, even after MLflow's {MLFLOW_HTTP_REQUEST_MAX_RETRIES.get()} "
        f"retries with backoff: {scrub(str(error))[:400]}",
        where="conf/config.yaml, key `tracking.uri` (or $MLFLOW_TRACKING_URI)",
        fix="start the tracking server (or fix the URI), then run the same command again: a sweep resumes where it "
        "stopped, finished trials are kept (MLFLOW_HTTP_REQUEST_MAX_RETRIES / _BACKOFF_FACTOR wait longer)",
    )


def sqlite_file(uri: str) -> Path | None:
    """The file of a sqlite store's URI (query string dropped); None for any other store or an in-memory one."""
    if not uri.startswith("sqlite:///") or uri == "sqlite:///:memory:":
        return None
    return Path(uri.removeprefix("sqlite:///").split("?", 1)[0])


@contextmanager
def store_lock(uri: str) -> Iterator[None]:
    """Serialize the creation of a sqlite store across processes. MLflow creates a missing store by running its
    schema migrations; two processes doing it at once on the same file fail ("table latest_metrics already exists",
    alembic "expected to match one row") and can leave it half-migrated. Seen here with 4 processes on a new file:
    one of 4 succeeded. Other stores (a server, a database with its own locking) need no lock."""
    db = sqlite_file(uri)
    if db is None:
        yield
        return
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no advisory locks; the sweeper still creates the store first
        yield
        return
    db.parent.mkdir(parents=True, exist_ok=True)
    with open(db.with_name(db.name + "-lock"), "a") as handle:  # mlflow.db-lock: git-ignored like mlflow.db-*
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def write_atomically(folder: Path, name: str, text: str) -> None:
    """`folder/name` with `text`, never seen half-written (a temp file in the same folder, then renamed), as MLflow's
    local artifact repository writes; without its temporary copy of the file elsewhere first."""
    import tempfile

    folder.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=folder, prefix=f".{name}.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(temp, folder / name)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


FAST_SQLITE: set[str] = set()  # resolved paths of the sqlite stores that get WAL + synchronous=NORMAL


def fast_sqlite(uri: str) -> None:
    """Write-ahead log and no fsync per commit for a sqlite store: each MLflow write is its own transaction, and
    with SQLite's default (rollback journal, synchronous=FULL) every one waited for the disk, ~21 ms per commit on
    this machine's disk (7+ per trial). In WAL mode with synchronous=NORMAL a commit costs no fsync, readers never
    block the writer (fewer "database is locked" between parallel workers), and the store stays consistent on any
    crash; only an OS crash or power loss may drop the last commits. WAL needs a local disk (not NFS), like any
    sqlite store shared by processes. Applied to every connection MLflow's engine opens to that file."""
    db = sqlite_file(uri)
    if db is None:
        return
    if not FAST_SQLITE:
        from sqlalchemy import event
        from sqlalchemy.pool import Pool

        event.listen(Pool, "connect", _sqlite_pragmas)
    FAST_SQLITE.add(str(db.resolve()))


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    import sqlite3

    if not isinstance(dbapi_connection, sqlite3.Connection):
        return
    row = dbapi_connection.execute("PRAGMA database_list").fetchone()
    if row is None or not row[2] or str(Path(row[2]).resolve()) not in FAST_SQLITE:
        return
    dbapi_connection.execute("PRAGMA busy_timeout = 20000")  # as MLflow's sessions: wait for a lock, not fail
    dbapi_connection.execute("PRAGMA journal_mode = WAL")  # persistent in the file; a no-op once set
    dbapi_connection.execute("PRAGMA synchronous = NORMAL")


class Tracker:
    """One MLflow experiment and the runs flowork writes to it."""

    writes_later = False  # True: writes return before they are applied (`resolve` waits for them)

    def __init__(self, uri: str, experiment: str, artifact_location: str | None = None) -> None:
        from mlflow import MlflowClient

        self.uri = uri
        self.artifact_repos: dict[str, Any] = {}  # run id -> its artifact repository, while the run is open
        self.pending_tags: dict[str, dict[str, str]] = {}  # run id -> tags waiting for its next write (see log)
        self.datasets: dict[Any, tuple[Any, str]] = {}  # data key -> (mlflow dataset entity, digest)
        fast_sqlite(uri)
        try:
            with store_lock(uri):  # the client creates (migrates) a fresh sqlite store
                self.client = MlflowClient(tracking_uri=uri)
                exp = self.client.get_experiment_by_name(experiment)
            if exp is None:
                self.experiment_id = self._create_experiment(experiment, artifact_location)
            else:  # upsert: an existing experiment is reused, with the artifact location it was created with
                self.experiment_id = str(exp.experiment_id)
                if artifact_location and exp.artifact_location.rstrip("/") != artifact_location.rstrip("/"):
                    log.warning(
                        "experiment %r exists with artifact location %s: its runs keep storing artifacts there, "
                        "not in %s (use a new tracking.experiment for a new location)",
                        experiment,
                        redact_uri(exp.artifact_location),
                        redact_uri(artifact_location),
                    )
        except FloworkError:
            raise
        except Exception as e:
            file_store = "MLFLOW_ALLOW_FILE_STORE" in str(e)  # MLflow refuses ./mlruns-style stores by default
            raise FloworkError(
                f"cannot reach the MLflow tracking store {redact_uri(uri)}: {type(e).__name__}: "
                + (str(e).split(". ")[0] if file_store else str(e)),
                where="conf/config.yaml, key `tracking.uri` (or $MLFLOW_TRACKING_URI)",
                fix="use a sqlite store (tracking.uri=sqlite:///path/to/mlflow.db, or unset it for the project's), "
                "or set MLFLOW_ALLOW_FILE_STORE=true to keep a file store"
                if file_store
                else "start the tracking server, fix the URI, or unset it to use the embedded store",
            ) from None

    def _create_experiment(self, name: str, artifact_location: str | None) -> str:
        from mlflow.exceptions import MlflowException

        try:
            return self.client.create_experiment(name, artifact_location=artifact_location)
        except MlflowException:  # another worker created it first: reuse it (upsert)
            exp = self.client.get_experiment_by_name(name)
            if exp is None:
                raise
            return str(exp.experiment_id)

    def start(self, name: str, tags: dict[str, str], parent_run_id: str | None = None) -> str:
        if parent_run_id:
            tags = {**tags, "mlflow.parentRunId": parent_run_id}
        secrets = env_secrets()
        tags = {k: scrub(str(v), secrets) for k, v in tags.items()}
        run = retrying(self.client.create_run, self.experiment_id, run_name=name, tags=tags)
        self.artifact_repos[run.info.run_id] = run.info.artifact_uri
        return str(run.info.run_id)

    def log(
        self,
        run_id: str,
        params: Mapping[str, str] = {},
        metrics: Mapping[str, float] = {},
        tags: Mapping[str, str] = {},
    ) -> None:
        """Batched write, chunked to MLflow's per-request limits (100 params, 1000 metrics, 100 tags).

        Tags alone, on a run this Tracker started and has not ended, wait for the run's next write or its end
        (which always comes: `run` ends every run): each write is a request or a transaction, and a trial's data
        digest tag then travels with its metrics."""
        import time

        from mlflow.entities import Metric, Param, RunTag

        if tags and not params and not metrics and run_id in self.artifact_repos:
            self.pending_tags.setdefault(run_id, {}).update(tags)
            return
        tags = {**self.pending_tags.pop(run_id, {}), **tags}
        now = int(time.time() * 1000)
        secrets = env_secrets()
        p = [Param(k, scrub(str(v), secrets)) for k, v in params.items()]
        m = [Metric(k, float(v), now, 0) for k, v in metrics.items()]
        t = [RunTag(k, scrub(str(v), secrets)) for k, v in tags.items()]
        while p or m or t:
            retrying(self.client.log_batch, run_id, metrics=m[:1000], params=p[:100], tags=t[:100])
            p, m, t = p[100:], m[1000:], t[100:]

    def log_text(self, run_id: str, text: str, path: str) -> None:
        """`text` as the artifact file `path` of the run. Through the run's artifact repository, known since the run
        was created: MlflowClient.log_text asks the store for the run first (one more request per run)."""
        import posixpath
        import tempfile

        repo = self.artifact_repos.get(run_id)
        if repo is None:  # a run this Tracker did not start (e.g. a sweep's run closed on resume)
            retrying(self.client.log_text, run_id, scrub(text), path)
            return
        if isinstance(repo, str):
            from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

            repo = self.artifact_repos[run_id] = get_artifact_repository(repo, tracking_uri=self.uri)
        directory, name = posixpath.split(posixpath.normpath(path))
        from mlflow.store.artifact.local_artifact_repo import LocalArtifactRepository

        inside = not directory.startswith(("..", "/"))  # as MLflow's own check: never outside the run's folder
        if isinstance(repo, LocalArtifactRepository) and inside:  # a local folder: ~0.5 ms in place instead of ~5 ms
            write_atomically(Path(repo.artifact_dir, directory), name, scrub(text))
            return
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp, name)
            local.write_text(scrub(text), encoding="utf-8")
            retrying(repo.log_artifact, str(local), directory or None)

    def log_csv(self, run_id: str, frame: Any, path: str) -> None:
        """A DataFrame as the CSV artifact `path` of the run."""
        self.log_text(run_id, frame.to_csv(), path)

    def log_inputs(self, run_id: str, datasets: list[Any]) -> None:
        """`mlflow.data` inputs, their source (the data URI) scrubbed like every other string flowork logs."""
        from mlflow.entities import Dataset, DatasetInput

        clean = [
            DatasetInput(
                Dataset(
                    d.dataset.name,
                    d.dataset.digest,
                    d.dataset.source_type,
                    scrub(d.dataset.source),
                    d.dataset.schema,
                    d.dataset.profile,
                ),
                d.tags,
            )
            for d in datasets
        ]
        retrying(self.client.log_inputs, run_id, datasets=clean)

    def log_dataset(self, run_id: str, raw: Any, source: str, target: str, key: Any) -> None:
        """The data's digest and source through `mlflow.data`, so runs on different data never look comparable.
        `key` identifies the data: the digest costs ~50 ms to compute, once per key and process."""
        import warnings

        from mlflow.entities import DatasetInput, InputTag

        key = (key, source, target)
        if key not in self.datasets:
            import mlflow.data.pandas_dataset

            with warnings.catch_warnings():  # "source can be interpreted in multiple ways": any is fine for a digest
                warnings.simplefilter("ignore")
                ds = mlflow.data.pandas_dataset.from_pandas(raw.reset_index(), source=source, targets=target)
            self.datasets[key] = (ds._to_mlflow_entity(), ds.digest)
        entity, digest = self.datasets[key]
        self.log_inputs(run_id, [DatasetInput(entity, [InputTag("mlflow.data.context", "training")])])
        self.log(run_id, tags={"flowork.data_digest": digest})

    def find_or_start(self, name: str, tags: dict[str, str], parent_run_id: str | None = None) -> str:
        """The run with these tags (a resumed sweep reuses its runs, RUNNING again), else a new one."""
        query = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
        found = self.client.search_runs([self.experiment_id], filter_string=query, max_results=1)
        if found:
            run_id = found[0].info.run_id
            retrying(self.client.update_run, run_id, status="RUNNING")
            return str(run_id)
        return self.start(name, tags, parent_run_id)

    def kill_running_children(self, parent_run_id: str, keep: Collection[int] = (), owner: str | None = None) -> None:
        """End as KILLED the child runs a stopped sweep left RUNNING, except those of the trial numbers in `keep`;
        `owner`: only those of the sweep command `owner` (their tag flowork.process)."""
        query = f"tags.mlflow.parentRunId = '{parent_run_id}' and attributes.status = 'RUNNING'"
        if owner is not None:
            query += f" and tags.`flowork.process` = '{owner}'"
        spared = {str(n) for n in keep}
        for r in self.client.search_runs([self.experiment_id], filter_string=query):
            if r.data.tags.get("flowork.trial") not in spared:
                self.end(r.info.run_id, "KILLED")

    def run_tags(self, run_id: str) -> dict[str, str]:
        return dict(self.client.get_run(run_id).data.tags)

    def find_trial_run(self, parent_run_id: str, number: int) -> str | None:
        query = f"tags.mlflow.parentRunId = '{parent_run_id}' and tags.`flowork.trial` = '{number}'"
        runs = self.client.search_runs([self.experiment_id], filter_string=query, max_results=1)
        return str(runs[0].info.run_id) if runs else None

    def completed_trial(self, run_id: str, metric: str) -> dict[str, float] | None:
        """A trial run that ended FINISHED with its scores: value (cv_<metric>), std, holdout, seconds; else None."""
        run = self.client.get_run(run_id)
        scores = run.data.metrics
        if run.info.status != "FINISHED" or f"cv_{metric}" not in scores:
            return None
        return {
            "value": scores[f"cv_{metric}"],
            "std": scores.get(f"cv_{metric}_std", math.nan),
            "holdout": scores.get(f"holdout_{metric}", math.nan),
            "seconds": ((run.info.end_time or run.info.start_time) - run.info.start_time) / 1000,
        }

    def resolve(self, run_id: str) -> str:
        """The MLflow id of a run this Tracker returned (the same here; see tracking_service.QueuedTracker)."""
        return run_id

    def applied(self, run_id: str | None) -> bool:
        """Whether `resolve(run_id)` returns at once (always here; see tracking_service.QueuedTracker)."""
        return True

    def check(self) -> None:
        """Raise an error of earlier writes (they raised at once here: see tracking_service.QueuedTracker)."""

    def close(self) -> None:
        """Every write done (nothing to wait for here; see tracking_service.QueuedTracker)."""

    def end(self, run_id: str, status: str = "FINISHED") -> None:
        if run_id in self.pending_tags:
            self.log(run_id)  # writes the pending tags
        retrying(self.client.set_terminated, run_id, status)
        self.artifact_repos.pop(run_id, None)

    @contextmanager
    def run(self, name: str, tags: dict[str, str], parent_run_id: str | None = None) -> Iterator[str]:
        """A run that always ends: FINISHED, FAILED (traceback logged as `traceback.txt`), KILLED on Ctrl-C or
        when pruned."""
        run_id = self.start(name, tags, parent_run_id)
        try:
            yield run_id
        except KeyboardInterrupt:
            self.end(run_id, "KILLED")
            raise
        except BaseException as e:
            if type(e).__name__ == "TrialPruned":  # optuna's (not imported here): stopped early, not a failure
                self.log(run_id, tags={"flowork.pruned": str(e)})
                self.end(run_id, "KILLED")
                raise
            try:
                self.log_text(run_id, "".join(traceback.format_exception(e)), "traceback.txt")
                self.log(run_id, tags={"flowork.error": str(e)[:5000]})
            finally:
                self.end(run_id, "FAILED")
            raise
        else:
            self.end(run_id, "FINISHED")


_TRACKERS: dict[tuple[str, str, str | None], Tracker] = {}


USERINFO = re.compile(r"([a-zA-Z][\w+.-]*://)[^/@\s]+@")
QUERY_PARAM = re.compile(r"([?&;]([\w.-]+)=)([^&;#\s'\"]*)")


def redact_uri(uri: str) -> str:
    """Hide `user:password@` and secret-looking query parameters (`?sig=`, `&password=`) in URIs."""
    uri = USERINFO.sub(r"\1***@", uri)
    return QUERY_PARAM.sub(lambda m: m[1] + REDACTED if looks_secret(m[2]) or m[2] == "sig" else m[0], uri)


def env_secrets() -> list[str]:
    """Values of the environment variables that look like credentials (AWS_SECRET_ACCESS_KEY, PGPASSWORD, ...),
    longest first, so a config that interpolates one (`${oc.env:...}`) under an innocent key is still scrubbed."""
    values = {v for k, v in os.environ.items() if len(v) >= MIN_ENV_SECRET and looks_secret(k) and k not in SHELL_PATHS}
    return sorted(values, key=len, reverse=True)


def scrub(text: str, secrets: list[str] | None = None) -> str:
    """Text with URI credentials and the values of secret-looking environment variables replaced."""
    for value in env_secrets() if secrets is None else secrets:
        if value in text:
            text = text.replace(value, REDACTED)
    return redact_uri(text) if "://" in text or "=" in text else text
