"""The MLflow pyfunc every fitted model is served through: raw observations in, forecast out, any model family.

Request: the most recent raw rows (the dataset's columns, time column included, at least `history` rows).
Response: one row per forecast origin (the last row by default): the forecast time and the target's forecast.
"""

from __future__ import annotations

import collections
import functools
import os
from dataclasses import dataclass
from typing import Any

import numpy as np  # loaded with pandas anyway
import pandas as pd

try:  # mlflow is a dependency, but keep this module importable for unit tests of the pure parts
    from mlflow.exceptions import MlflowException
    from mlflow.pyfunc import PythonModel
except ImportError:  # pragma: no cover
    PythonModel = object  # type: ignore[misc,assignment]
    MlflowException = Exception  # type: ignore[misc,assignment]


@dataclass
class ForecastSpec:
    time_column: str
    target: str
    horizon: int
    freq: str
    columns: list[str]  # raw columns a request must carry (besides the time column)
    history: int  # raw rows needed to forecast from the last one
    features: list[str]  # the columns the model was trained on
    ranges: dict[str, tuple[float, float]] | None = None  # each numeric raw column's (min, max) in training
    time_format: str | None = None  # data.time_format: a request's times may be laid out as the data's, or ISO
    labels: dict[str, list[str]] | None = None  # each text column the features read: the values seen in training
    time_zone: str | None = None  # data.time_zone: a request's times with an offset are read as the data's were


PARAMS = {"all_origins": False}  # the params a request may carry next to its rows, with their defaults


class BadRequest(ValueError):
    """A request the model cannot answer; the message says what is wrong (served as HTTP 400)."""


class RequestRefused(MlflowException):
    """A BadRequest as MLflow's scoring server answers it: HTTP 400 with our message.

    The server rewrites the message of an MlflowException raised by predict() to "Failed to predict data
    '<the whole request frame>'. Error: <message>", which buries the reason under a dump of every row sent (and
    echoes the client's data into logs). The first message set is kept; later assignments are ignored.
    """

    @property
    def message(self) -> str:
        return self.__dict__["reason"]

    @message.setter
    def message(self, value: str) -> None:
        self.__dict__.setdefault("reason", value)


class Forecaster(PythonModel):
    """The fitted model with its cleaning/feature pipeline: raw rows in, the forecast for the last row out."""

    def __init__(self, pipeline: Any, model: Any, spec: ForecastSpec) -> None:
        self.pipeline, self.model, self.spec = pipeline, model, spec

    def load_context(self, context: Any) -> None:
        check_what_mlflow_checks_first()

    def features(self, raw: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(request rows indexed by time, features of every origin the rows allow), or BadRequest."""
        from flowork.data import set_time_index
        from flowork.errors import FloworkError

        s = self.spec
        if len(raw) == 0 or len(raw.columns) == 0:  # (MLflow drops the columns the model does not know)
            raise BadRequest(
                "empty request, or none of its columns is one the model reads: send the latest "
                f"{s.history} rows (or more) of {[s.time_column, *s.columns]}"
            )
        missing = [c for c in [s.time_column, *s.columns] if c not in raw.columns]
        if missing:
            raise BadRequest(f"missing column(s) {missing}; a request needs {[s.time_column, *s.columns]}")
        try:
            frame = set_time_index(
                raw, s.time_column, columns=s.columns, time_format=s.time_format, time_zone=s.time_zone
            )
        except FloworkError as e:
            raise BadRequest(e.what) from None
        if len(frame) < s.history:
            raise BadRequest(f"too little history: {len(frame)} rows given, this model needs at least {s.history}")
        check_values(frame, s.ranges or {})
        check_labels(frame, s.labels or {})
        X = self.pipeline(frame)
        if list(map(str, X.columns)) != s.features:
            lost = sorted(set(s.features) - set(map(str, X.columns)))
            raise BadRequest(f"the request builds other features than training (missing {lost}): check its values")
        return frame, X

    def forecast(self, raw: pd.DataFrame, all_origins: bool = False) -> pd.DataFrame:
        s = self.spec
        frame, X = self.features(raw)
        if all_origins:  # every origin whose features can be built (rows with missing values leave some out)
            self.check_grid(frame)
            X = X[X.notna().all(axis=1)]
            if len(X) == 0:
                raise BadRequest(
                    f"cannot build features for any row: missing values (NaN) in every window of {s.history} rows"
                )
        else:
            last = X.iloc[-1:]
            if len(X) == 0 or X.index[-1] != frame.index[-1] or pd.isna(last.to_numpy()).any():
                nan_cols = [c for c in s.columns if frame[c].tail(s.history).isna().any()]
                if not nan_cols:  # no missing value sent: rows off the model's time grid leave gaps the features see
                    self.check_grid(frame)
                raise BadRequest(
                    f"cannot build features for the last row ({frame.index[-1]}): missing values (NaN) in "
                    f"{nan_cols or 'the request'} within the last {s.history} rows"
                )
            X = last
        pred = np.asarray(self.model.predict(X), dtype=float).reshape(-1)
        when = steps_after(X.index, s.horizon, s.freq)
        return pd.DataFrame({s.time_column: when, f"{s.target}_forecast": pred})

    def check_grid(self, frame: pd.DataFrame) -> None:
        """Rows one per `freq` step: a gap would silently shift the lags of every row after it."""
        from flowork.data import check_freq
        from flowork.errors import FloworkError

        try:
            check_freq(frame.index, self.spec.freq)
        except FloworkError as e:
            raise BadRequest(f"{e.what}: send consecutive rows, one per {self.spec.freq!r} step") from None

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        try:
            return self.forecast(model_input, bool((params or {}).get("all_origins", PARAMS["all_origins"])))
        except BadRequest as e:
            from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

            raise RequestRefused(str(e), error_code=INVALID_PARAMETER_VALUE) from None


def check_values(frame: pd.DataFrame, ranges: dict[str, tuple[float, float]]) -> None:
    """BadRequest for a value the model would extrapolate from blindly: infinite, or farther outside the training
    range than the range is wide (Kelvin sent for Celsius, a -9999 missing-value code). A new record a little past
    the training range is served: real data sets records."""
    if not ranges:
        return
    columns = list(ranges)
    # one comparison of every column at once: per column, pandas' conversions cost ~30 us a request
    values = np.column_stack([numbers(frame[column]) for column in columns])
    lo, hi = np.array(list(ranges.values()), dtype=float).T
    span = np.where(hi != lo, hi - lo, np.where(hi != 0, abs(hi), 1.0))
    far = (values < lo - span) | (values > hi + span)  # NaN compares False: a missing value is clean()'s job
    if far.any():
        j = int(far.any(axis=0).argmax())  # the first column with such a value, at its first row
        k = int(far[:, j].argmax())
        raise BadRequest(
            f"{columns[j]} = {values[k, j]:g} at {frame.index[k]} is far outside the values the model was trained "
            f"on ({lo[j]:g} to {hi[j]:g}): check the units, and send null (not a code like -9999) for a missing value"
        )


def numbers(column: pd.Series) -> Any:
    """A column's values as floats, NaN where one is missing or not a number."""
    if column.dtype.kind in "fiub":
        return column.to_numpy(dtype=float, na_value=np.nan)
    return pd.to_numeric(column, errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def check_labels(frame: pd.DataFrame, labels: dict[str, list[str]]) -> None:
    """BadRequest for a label the model never saw (weather='hail'): features built from known labels (one column per
    label) would silently read it as none of them."""
    for column, known in labels.items():
        values = frame[column]
        unseen = values.notna() & ~values.isin(known)
        if unseen.any():
            k = int(unseen.to_numpy().argmax())
            raise BadRequest(
                f"{column} = {values.iloc[k]!r} at {frame.index[k]} is a value the model never saw in training "
                f"(it knows {', '.join(map(repr, known))}): send one of those, or retrain with data that has it"
            )


def labels_read(raw: pd.DataFrame, pipeline: Any, history: int, most: int = 100) -> dict[str, list[str]]:
    """The text columns (up to `most` distinct values) whose values the features read, with those values: a column
    counts when putting a label it never had into the last `history` rows changes their features (or fails)."""
    tail = raw.tail(history)
    base = pipeline(tail)
    labels = {}
    for column in raw.columns:
        values = raw[column].dropna()
        if pd.api.types.is_numeric_dtype(values) or values.nunique() > most:
            continue
        changed = tail.astype({column: object}).assign(**{str(column): "flowork-unseen-label"})
        try:
            read = not pipeline(changed).equals(base)
        except Exception:  # the features cannot take an unknown label at all: it matters
            read = True
        if read:
            labels[str(column)] = sorted(map(str, values.unique()))
    return labels


def check_what_mlflow_checks_first() -> None:
    """Have MLflow's scoring server (in this process) answer a request whose params or column names are wrong with
    flowork's reason. MLflow checks those against the signature before the Forecaster sees the request: a param of
    the wrong type, or a column sent twice, got a 400 that starts with a dump of every row sent (a repeated time
    column: an AttributeError), and an unknown param (a typo of all_origins) was ignored. The server has no hook for
    this, so its request handler is wrapped, once: a request that carries params is checked before MLflow reads it,
    any other only after MLflow refused it (the check parses the JSON body again)."""
    from mlflow.pyfunc import scoring_server

    mlflow_invocations = scoring_server.invocations
    if getattr(mlflow_invocations, "checks_requests_first", False):
        return

    @functools.wraps(mlflow_invocations)
    def invocations(data: Any, content_type: Any, model: Any, *args: Any, **kwargs: Any) -> Any:
        if carries_params(data) and serves_a_forecaster(model):
            refuse_bad_shape(data, content_type)
        try:
            return mlflow_invocations(data, content_type, model, *args, **kwargs)
        except MlflowException:
            if serves_a_forecaster(model):
                refuse_bad_shape(data, content_type)
            raise

    invocations.checks_requests_first = True  # type: ignore[attr-defined]
    scoring_server.invocations = invocations


def serves_a_forecaster(model: Any) -> bool:
    try:
        return isinstance(model.unwrap_python_model(), Forecaster)
    except Exception:  # another model loaded in this process: not a python model, or not ours
        return False


def carries_params(data: Any) -> bool:
    """Whether the request body may hold params (a substring test: no second JSON parse of every request)."""
    if isinstance(data, str):
        return '"params"' in data
    return isinstance(data, bytes | bytearray) and b'"params"' in data


def refuse_bad_shape(data: Any, content_type: Any) -> None:
    """RequestRefused if a JSON request's params or column names are wrong; anything else is left to MLflow."""
    import json

    from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

    if not str(content_type or "").startswith("application/json"):
        return
    try:
        request = json.loads(data)
    except ValueError:
        return
    if not isinstance(request, dict):
        return
    problem = params_problem(request.get("params")) or columns_problem(request.get("dataframe_split"))
    if problem:
        raise RequestRefused(problem, error_code=INVALID_PARAMETER_VALUE)


def params_problem(params: Any) -> str | None:
    if params is None:
        return None
    expected = ", ".join(f'"{k}": {json_type(v)}' for k, v in PARAMS.items())
    if not isinstance(params, dict):
        return f"params must be a JSON object, e.g. {{{expected}}}; got {json_text(params)}"
    unknown = [k for k in params if k not in PARAMS]
    if unknown:
        return f"unknown params {unknown}: this model takes {{{expected}}} (each optional)"
    for key, value in params.items():
        if value is not None and type(value) is not type(PARAMS[key]):
            return f'params "{key}" must be {json_type(PARAMS[key])}, not {json_text(value)}'
    return None


def columns_problem(split: Any) -> str | None:
    columns = split.get("columns") if isinstance(split, dict) else None
    if not isinstance(columns, list):
        return None
    repeated = sorted(name for name, n in collections.Counter(map(str, columns)).items() if n > 1)
    return f"column(s) {repeated} sent more than once: send each column once" if repeated else None


def json_type(default: Any) -> str:
    """How a param's value is written in JSON."""
    return "true or false" if isinstance(default, bool) else type(default).__name__


def json_text(value: Any) -> str:
    import json

    return json.dumps(value)[:80]


def steps_after(index: pd.DatetimeIndex, steps: int, freq: str) -> Any:
    """The times `steps` steps of `freq` after each of `index`, as an array. A step of fixed length (D, h) is added
    in numpy (~3 us), a calendar one (MS, W-MON) by pandas (~30 us a request); index.shift(steps, freq) would also
    regenerate a date range when the index carries that freq."""
    step = offset(freq) * steps
    if isinstance(step, pd.offsets.Tick) and index.tz is None:
        return index.to_numpy() + np.timedelta64(step.nanos, "ns")
    return (index + step).array


@functools.cache
def offset(freq: str) -> Any:
    """pandas' DateOffset for `freq` (to_offset parses the string again on every call, ~25 us a request)."""
    from pandas.tseries.frequencies import to_offset

    return to_offset(freq)


def required_history(raw: pd.DataFrame, pipeline: Any, X_full: pd.DataFrame) -> int:
    """Fewest trailing raw rows that reproduce the features of the last row (grows by doubling, then bisects)."""
    last = X_full.iloc[-1]

    def enough(k: int) -> bool:
        try:
            X = pipeline(raw.iloc[-k:])
        except Exception:
            return False
        if len(X) == 0 or X.index[-1] != X_full.index[-1]:
            return False
        try:
            pd.testing.assert_series_equal(X.iloc[-1], last, check_exact=False, rtol=1e-9)
        except AssertionError:
            return False
        return True

    hi = 1
    while hi < len(raw) and not enough(hi):
        hi *= 2
    hi = min(hi, len(raw))
    lo = hi // 2
    while lo + 1 < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if enough(mid) else (mid, hi)
    return hi


def champion_uri(model_name: str, tracking_uri: str) -> str:
    """models:/NAME@champion once the registry has it, else an error that says how to get one (MLflow's own
    server would start and then fail with a traceback)."""
    from unittest import mock

    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from flowork.errors import FloworkError
    from flowork.tracking import scrub, sqlite_file

    where = "tracking.model_name and tracking.uri (make: MODEL_NAME, MLFLOW_TRACKING_URI)"
    fix = "run a sweep first (make run); `flowork select` registers the best trial of one that ran"
    store = sqlite_file(tracking_uri)
    if store and not store.exists():  # MLflow would create an empty store there
        raise FloworkError(f"no champion of {model_name!r}: no tracking store at {store}", where=where, fix=fix)
    # one quick request: a tracking server that does not answer is said so in seconds, not after MLflow's ~4 min of
    # retries (the server started next retries as MLflow sets it)
    quick = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "15"}
    try:
        with mock.patch.dict(os.environ, quick):  # (the stdlib's set-and-restore of environment variables)
            MlflowClient(tracking_uri).get_model_version_by_alias(model_name, "champion")
    except MlflowException as e:
        reason = str(e.message).strip().splitlines()[0]
        if e.error_code == "RESOURCE_DOES_NOT_EXIST" or "alias champion not found" in reason:
            raise FloworkError(
                f"no champion of {model_name!r} in {scrub(tracking_uri)}: {reason}", where=where, fix=fix
            ) from None
        raise FloworkError(
            f"cannot read the model registry at {scrub(tracking_uri)}: {scrub(reason)}",
            where=where,
            fix="check the tracking URI (--tracking-uri, tracking.uri, $MLFLOW_TRACKING_URI) and that its server "
            "is running and reachable from here",
        ) from None
    return f"models:/{model_name}@champion"


def log_forecaster(tracker: Any, run_id: str, forecaster: Forecaster, raw_example: pd.DataFrame, root: str) -> str:
    """Log the forecaster as an MLflow pyfunc that carries the project's user_code (no checkout needed to serve)."""
    import logging
    import os

    import mlflow

    example = raw_example.reset_index()
    layout = forecaster.spec.time_format or "%Y-%m-%dT%H:%M:%S"  # the example request as the user's data has it
    example[forecaster.spec.time_column] = example[forecaster.spec.time_column].dt.strftime(layout)
    output = forecaster.forecast(example)
    # user_code and flowork travel with the model, so serving needs neither the checkout nor flowork installed.
    flowork_dir = os.path.dirname(os.path.abspath(__file__))
    code = [p for p in (os.path.join(root, "user_code"), flowork_dir) if os.path.isdir(p)]
    # Quiet MLflow's generic cloudpickle notice: the model is flowork's own wrapper, loaded by its own user.
    logging.getLogger("mlflow.pyfunc").setLevel(logging.ERROR)
    mlflow.set_tracking_uri(tracker.uri)  # log_model only has the fluent (process-global) API
    with mlflow.start_run(run_id=run_id, nested=True):
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=forecaster,
            code_paths=code,
            # explicit: inferring requirements took 7 s here and got them wrong (DESIGN §11)
            pip_requirements=pip_requirements(forecaster),
            signature=signature(example, output),
            input_example=example,
            metadata={"history": forecaster.spec.history, "horizon": forecaster.spec.horizon},
        )
    return str(info.model_uri)


def signature(example: pd.DataFrame, output: pd.DataFrame) -> Any:
    """The request's columns and types as MLflow records them, every column optional: MLflow's own check of a
    missing column (or an empty request) answers with a dump of the whole request before its reason, where the
    Forecaster's check names what is missing and what a request needs. Types are still enforced by MLflow."""
    from mlflow.models import infer_signature
    from mlflow.types.schema import ColSpec, Schema

    inferred = infer_signature(example, output, params=PARAMS)
    inferred.inputs = Schema([ColSpec(c.type, c.name, required=False) for c in inferred.inputs.inputs])
    return inferred


def pip_requirements(model: Any) -> list[str]:
    """What serving `model` needs: the core stack, plus each model library its pickle refers to (a ridge champion
    does not pull torch). Local version tags (torch's `+cpu`) are dropped: no index pip reads by default has them;
    torch comes with PyTorch's CPU index, where its CPU build is."""
    from importlib.metadata import PackageNotFoundError, version

    import cloudpickle

    from flowork.errors import FloworkError

    try:
        blob = cloudpickle.dumps(model)
    except Exception as e:  # pickle.PicklingError, TypeError ("cannot pickle '_thread.lock' object"), ...
        raise FloworkError(
            f"the fitted model cannot be saved: {type(e).__name__}: {e}",
            where="the object the training function returns (conf/model/<option>.yaml, key `model.train`)",
            fix="return a model without open files, locks, threads or connections; or set tracking.log_model=false",
        ) from None
    core = ["mlflow", "cloudpickle", "pandas", "numpy", "scikit-learn", "hydra-core", "omegaconf"]
    optional = {"xgboost": "xgboost-cpu", "prophet": "prophet", "darts": "darts", "torch": "torch"}
    wanted = core + [dist for module, dist in optional.items() if module.encode() in blob]
    reqs = []
    for dist in wanted:
        try:
            reqs.append(f"{dist}=={version(dist).split('+')[0]}")
        except PackageNotFoundError:
            continue
    if any(r.startswith("torch==") for r in reqs):  # a serving image would get PyPI's multi-GB CUDA build of torch
        reqs.insert(0, f"--extra-index-url {TORCH_CPU_INDEX}")  # its +cpu build sorts first for torch==X
    return reqs


TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"  # as the Dockerfile's install (TORCH_INDEX)
