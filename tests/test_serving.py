"""Serving: the logged pyfunc answers raw rows with the same forecast the backtest protocol gives, for every
family, and a live `mlflow models serve` turns bad requests into HTTP 400 with a message and stays up."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from flowork.run import run
from tests.conftest import ROOT

FAST = ["ridge", "prophet", "ensemble"]
ALL = ["ridge", "random_forest", "xgb", "prophet", "darts_nbeats", "ensemble"]


def logged(make_cfg, store, model):
    result = run(make_cfg(f"model={model}", "tracking.log_model=true", "data.backtest.folds=2"), root=str(ROOT))
    mlflow.set_tracking_uri(store)
    return result, mlflow.pyfunc.load_model(result.model_uri)


def request_rows(weather: pd.DataFrame, end: int, n: int) -> pd.DataFrame:
    return weather.iloc[end - n : end].reset_index(drop=True)


@pytest.mark.parametrize("model", [pytest.param(m, marks=[] if m in FAST else pytest.mark.slow) for m in ALL])
def test_served_forecast_equals_the_backtest_prediction(make_cfg, store, weather, model):
    """For origins inside the holdout, a request with the rows up to the origin gets exactly the prediction the
    fitted model makes for that origin's row in the backtest's feature matrix."""
    _, pyfunc = logged(make_cfg, store, model)
    inner = pyfunc.unwrap_python_model()
    raw = weather.head(400).set_index(pd.to_datetime(weather.head(400)["date"])).drop(columns="date")
    raw.index.name = "date"
    X = inner.pipeline(raw)
    history = pyfunc.metadata.metadata["history"]
    schema = pyfunc.metadata.get_input_schema()  # the request's contract, as `mlflow models` tools show it
    assert schema.input_names() == list(weather.columns) and not schema.required_input_names()
    for end in (340, 370, 400):  # origins in the holdout (last 80 rows), the last one included
        served = pyfunc.predict(request_rows(weather, end, history + 3))
        origin = pd.Timestamp(weather["date"].iloc[end - 1])
        expected = float(np.asarray(inner.model.predict(X.loc[[origin]]))[0])
        assert served["date"].iloc[0] == origin + pd.Timedelta(days=1)
        assert served["temp_max_forecast"].iloc[0] == pytest.approx(expected, rel=1e-6)
    many = pyfunc.predict(request_rows(weather, 400, history + 5), params={"all_origins": True})
    assert len(many) >= 5 and many["date"].is_monotonic_increasing


def test_requests_of_every_origin_and_with_time_zones(make_cfg, store, weather):
    """`all_origins` serves each origin whose features can be built and refuses a request with none, or with a gap
    in its times; times with an offset (a zone's daylight-saving switch too) are read at their wall-clock time."""
    from mlflow.exceptions import MlflowException

    _, pyfunc = logged(make_cfg, store, "ridge")
    history = pyfunc.metadata.metadata["history"]
    rows = request_rows(weather, 400, history + 10)
    every = {"all_origins": True}
    full = pyfunc.predict(rows, params=every)
    assert len(full) == 11
    gappy = rows.assign(temp_max=rows["temp_max"].where(rows.index < len(rows) - 5))  # the last 5 unknown
    assert 0 < len(pyfunc.predict(gappy, params=every)) < len(full)
    for bad, message in (
        (rows.assign(temp_max=np.nan), "cannot build features for any row"),
        (rows.drop(index=[3, 4, 5, 6]), "not a regular 'D' grid"),
    ):
        with pytest.raises(MlflowException, match=message):
            pyfunc.predict(bad, params=every)
    last = pyfunc.predict(rows)
    # a zone's offsets (-08:00 to -07:00 at a switch, as 2013-03-10 in Los Angeles: pandas refuses that as one column),
    # and offsets on some rows only (the middle third; the first and last thirds, one naive third between them)
    for zone in ("-08:00", "Z", "+0100", ["-08:00", "-07:00"], ["", "+01:00", ""], ["+01:00", "", "-05:00"], ["", "Z"]):
        ends = zone if isinstance(zone, list) else [zone]
        zoned = rows.assign(date=[f"{d}T00:00:00{ends[i * len(ends) // len(rows)]}" for i, d in enumerate(rows.date)])
        pd.testing.assert_frame_equal(pyfunc.predict(zoned), last)


def score(pyfunc, body: str) -> tuple[int, str]:
    """A JSON request as MLflow's scoring server answers it, in this process: its handler, then its error response."""
    from mlflow.exceptions import MlflowException
    from mlflow.pyfunc import scoring_server

    try:
        schema = pyfunc.metadata.get_input_schema()
        answer = scoring_server.invocations(body.encode(), "application/json", pyfunc, schema)
        return answer.status, answer.response
    except MlflowException as e:
        return e.get_http_status_code(), e.message


def twice(rows: pd.DataFrame, column: str) -> str:
    """A dataframe_split request with `column` sent a second time (pandas' to_dict drops a repeated column)."""
    split = rows.to_dict(orient="split", index=False)
    data = [[*r, r[split["columns"].index(column)]] for r in split["data"]]
    return json.dumps({"dataframe_split": {"columns": [*split["columns"], column], "data": data}})


def test_params_and_column_names_mlflow_checks_first_are_refused_with_the_reason(make_cfg, store, weather):
    """MLflow checks params and column names against the signature before the Forecaster sees a request: a wrong
    param (or a column sent twice) got a 400 that began with a dump of every row sent, an unknown param was ignored."""
    _, pyfunc = logged(make_cfg, store, "ridge")
    rows = request_rows(weather, 400, pyfunc.metadata.metadata["history"] + 3)
    split = rows.to_dict(orient="split", index=False)

    def with_params(params) -> str:
        return json.dumps({"dataframe_split": split, "params": params})

    bad = {
        "a string for a boolean": (with_params({"all_origins": "true"}), 'params "all_origins" must be true or false'),
        "a number for a boolean": (with_params({"all_origins": 1}), "must be true or false, not 1"),
        "a list for a boolean": (with_params({"all_origins": [True]}), "must be true or false, not [true]"),
        "an unknown param": (with_params({"all_origin": True}), "unknown params ['all_origin']: this model takes"),
        "params not an object": (with_params([True]), "params must be a JSON object"),
        "the time column twice": (twice(rows, "date"), "column(s) ['date'] sent more than once"),
        "a numeric column twice": (twice(rows, "temp_max"), "column(s) ['temp_max'] sent more than once"),
    }
    for name, (body, fragment) in bad.items():
        status, message = score(pyfunc, body)
        assert status == 400 and fragment in message, (name, status, message[:500])
        assert "Failed to predict" not in message, name
    for params, origins in (({"all_origins": True}, 4), ({"all_origins": None}, 1), ({}, 1)):
        status, answer = score(pyfunc, with_params(params))
        assert status == 200 and len(json.loads(answer)["predictions"]) == origins, (params, answer)


@pytest.mark.parametrize(
    ("features", "served"),
    [
        ([], True),  # the example's features do not read `weather`: any label is served
        (["+features.build.categorical={weather: [sun, rain, drizzle, snow, fog]}"], False),  # one-hot of the label
    ],
)
def test_a_label_never_seen_in_training_is_refused_where_the_features_read_it(
    make_cfg, store, weather, features, served
):
    from mlflow.exceptions import MlflowException

    cfg = make_cfg("model=ridge", "tracking.log_model=true", "data.backtest.folds=2", *features)
    pyfunc = mlflow.pyfunc.load_model(run(cfg, root=str(ROOT)).model_uri)
    rows = request_rows(weather, 400, pyfunc.metadata.metadata["history"] + 2)
    pyfunc.predict(rows.assign(weather="rain"))  # known
    hail = rows.assign(weather=["rain"] * (len(rows) - 1) + ["hail"])
    if served:
        assert len(pyfunc.predict(hail)) == 1
    else:
        with pytest.raises(MlflowException, match="weather = 'hail' at .* is a value the model never saw"):
            pyfunc.predict(hail)


def test_day_first_times_train_and_serve(make_cfg, store, weather, tmp_path):
    """data.time_format reads day-first dates, and the served model reads a request laid out the same way (or ISO):
    05/01 is the 5th of January in both, never May 1st."""
    day_first = weather.head(400).assign(date=pd.to_datetime(weather.head(400)["date"]).dt.strftime("%d/%m/%Y"))
    day_first.to_csv(tmp_path / "day_first.csv", index=False)
    cfg = make_cfg(
        "model=ridge", f"data.uri={tmp_path}/day_first.csv", "data.time_format=%d/%m/%Y", "tracking.log_model=true"
    )
    result = run(cfg, root=str(ROOT))
    mlflow.set_tracking_uri(store)
    pyfunc = mlflow.pyfunc.load_model(result.model_uri)
    history = pyfunc.metadata.metadata["history"]
    day_first_request = request_rows(day_first, 400, history + 3)
    iso_request = request_rows(weather, 400, history + 3)
    served = [pyfunc.predict(r) for r in (day_first_request, iso_request)]
    assert served[0]["date"].iloc[0] == pd.Timestamp(weather["date"].iloc[399]) + pd.Timedelta(days=1)
    pd.testing.assert_frame_equal(served[0], served[1])


def test_times_with_offsets_over_a_daylight_saving_switch_train_and_serve_in_utc(make_cfg, store, weather, tmp_path):
    """Hourly times written on Berlin's clock with their offsets repeat 02:00 on 27 Oct 2024; with data.time_zone=UTC
    they train as the instants they are, and the served model reads a request's offsets the same way: its forecast
    is for one hour after the last row's instant, whatever offset that row is written in."""
    from flowork.errors import FloworkError

    instants = pd.date_range("2024-10-11", periods=400, freq="h", tz="Europe/Berlin")  # the switch at row 387
    hourly = weather.head(400).assign(date=[t.isoformat() for t in instants])
    hourly.to_csv(tmp_path / "hourly.csv", index=False)
    args = ["model=ridge", f"data.uri={tmp_path}/hourly.csv", "data.freq=h", "tracking.log_model=true"]
    with pytest.raises(FloworkError, match="duplicate timestamps"):  # read at their wall clock, as before
        run(make_cfg(*args), root=str(ROOT))
    result = run(make_cfg(*args, "data.time_zone=UTC"), root=str(ROOT))
    mlflow.set_tracking_uri(store)
    pyfunc = mlflow.pyfunc.load_model(result.model_uri)
    rows = request_rows(hourly, 400, pyfunc.metadata.metadata["history"] + 20)  # across the switch
    assert rows["date"].str.endswith("+02:00").any() and rows["date"].iloc[-1].endswith("+01:00")
    served = pyfunc.predict(rows)
    last = instants[-1].tz_convert("UTC").tz_localize(None)
    assert served["date"].iloc[0] == last + pd.Timedelta(hours=1)
    in_utc = rows.assign(date=[t.tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%SZ") for t in instants[-len(rows) :]])
    pd.testing.assert_frame_equal(pyfunc.predict(in_utc), served)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(port: int, body: bytes | str, content_type: str = "application/json") -> tuple[int, dict]:
    data = body.encode() if isinstance(body, str) else body
    req = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data, {"Content-Type": content_type})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


@pytest.fixture
def server(make_cfg, store, tmp_path):
    procs = []

    def start(model):
        result, pyfunc = logged(make_cfg, store, model)
        port = free_port()
        env = {
            **os.environ,
            "MLFLOW_TRACKING_URI": store,
            "PATH": f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}",
        }
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mlflow",
                "models",
                "serve",
                "-m",
                result.model_uri,
                "--env-manager",
                "local",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        procs.append(proc)
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=1)
                return port, pyfunc
            except OSError:
                time.sleep(0.3)
        raise RuntimeError("mlflow models serve did not start")

    yield start
    for p in procs:
        p.terminate()
        p.wait(timeout=20)


def records(df: pd.DataFrame) -> str:
    return json.dumps({"dataframe_records": df.to_dict(orient="records")})


@pytest.mark.parametrize("model", FAST)
def test_live_server_matches_offline_and_rejects_bad_requests(server, weather, model):
    port, pyfunc = server(model)
    history = pyfunc.metadata.metadata["history"]
    rows = request_rows(weather, 400, max(history + 2, 12))
    offline = pyfunc.predict(rows)["temp_max_forecast"].iloc[0]
    status, body = post(port, json.dumps({"dataframe_split": rows.to_dict(orient="split", index=False)}))
    assert status == 200
    assert body["predictions"][0]["temp_max_forecast"] == pytest.approx(offline, rel=1e-6)
    assert body["predictions"][0]["date"].startswith("2013-02-04")

    def changed(edits):
        df = rows.copy()
        for (row, col), value in edits.items():
            df.loc[row, col] = value
        return df

    bad = {
        "missing column": (records(rows.drop(columns="wind")), "missing column(s) ['wind']"),
        "too little history": (records(rows.tail(max(history - 1, 1))), "too little history" if history > 1 else ""),
        "unparsable time": (records(changed({(3, "date"): "not a date"})), "not timestamps"),
        "unsorted": (records(rows.iloc[::-1]), "not sorted"),
        "duplicate": (records(changed({(5, "date"): rows.loc[4, "date"]})), "duplicate timestamps"),
        # the example's clean() carries an observation forward up to 3 rows: 4 missing in a row is too many
        "NaN": (records(changed({(len(rows) - k, "temp_max"): None for k in range(1, 5)})), "temp_max"),
        "wrong type": (records(changed({(2, "temp_min"): "cold"})), ""),
        "numbers as times": (records(rows.assign(date=range(len(rows)))), "holds numbers"),
        "off the time grid": (
            records(
                rows.assign(date=pd.date_range("2013-01-01", periods=len(rows), freq="h").strftime("%Y-%m-%d %H:%M"))
            ),
            "not a regular 'D' grid",
        ),
        # values far outside the training range (temp_max -1.6..35.6 °C, wind 0.4..9.5 m/s): not extrapolated
        "Kelvin": (records(changed({(len(rows) - 1, "temp_max"): 285.0})), "temp_max = 285 at"),
        "missing-value code": (records(changed({(len(rows) - 2, "wind"): -9999.0})), "wind = -9999 at"),
        "infinite": (records(changed({(len(rows) - 3, "temp_min"): float("inf")})), "temp_min = inf at"),
        "empty": (json.dumps({"dataframe_records": []}), "empty request"),
        "unknown columns only": (records(rows.add_prefix("x_")), "none of its columns is one the model reads"),
        # checked by MLflow before the model sees the request (see check_what_mlflow_checks_first)
        "param of the wrong type": (
            json.dumps({"dataframe_records": rows.to_dict(orient="records"), "params": {"all_origins": "yes"}}),
            'params "all_origins" must be true or false, not "yes"',
        ),
        "a column twice": (twice(rows, "date"), "column(s) ['date'] sent more than once"),
        "not JSON": ("{not json", ""),
        "no body": ("", ""),
    }
    for name, (body_text, fragment) in bad.items():
        status, body = post(port, body_text)
        assert status == 400, (name, status, body)
        assert fragment in body.get("message", ""), (name, body)
        assert "Failed to predict" not in body["message"], (name, body)  # the reason, not a dump of the request
    status, body = post(port, records(changed({(len(rows) - 1, "wind"): None})))  # a gap clean() fills
    assert status == 200
    status, body = post(port, records(changed({(len(rows) - 1, "temp_max"): 38.0})))  # a new record is served
    assert status == 200, body
    status, body = post(port, records(rows))  # still up, still right
    assert status == 200 and body["predictions"][0]["temp_max_forecast"] == pytest.approx(offline, rel=1e-6)


def serve_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "flowork.cli", "serve", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"},
    )


@pytest.mark.parametrize(
    ("args", "project", "message"),
    [
        (["--model-name", "nope"], False, "no champion of 'nope'"),
        ([], True, "no champion of 'temperature-forecaster'"),  # conf/config.yaml's tracking.model_name
        ([], False, "not a flowork project's root"),
    ],
)
def test_serving_without_a_champion_says_how_to_get_one(tmp_path, args, project, message):
    if project:
        shutil.copytree(ROOT / "conf", tmp_path / "conf")
    out = serve_cli(*args, "--port", "0", cwd=tmp_path)  # no ./mlflow.db: no store; any free port
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert message in out.stderr


def test_serving_reads_the_store_the_projects_config_names_and_creates_none(tmp_path):
    """tracking.uri from conf/local/default.yaml, as the project's jobs read it: not a new ./mlflow.db."""
    shutil.copytree(ROOT / "conf", tmp_path / "conf")
    (tmp_path / "conf/local").mkdir()
    store = tmp_path / "team" / "mlflow.db"
    (tmp_path / "conf/local/default.yaml").write_text(f"tracking:\n  uri: sqlite:///{store}\n")  # no header
    out = serve_cli(cwd=tmp_path)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert f"no tracking store at {store}" in out.stderr
    assert not (tmp_path / "mlflow.db").exists() and not store.exists()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        # in seconds: MLflow's own retries take ~4 min before they give up
        (["--tracking-uri", f"http://127.0.0.1:{closed_port()}"], "cannot read the model registry at http://127.0.0.1"),
        (["--tracking-uri", "foo://bar"], "cannot read the model registry at foo://bar"),
        (["--port", "70000"], "Invalid value for '--port'"),
        (["--host", "no-such-host.invalid"], "give --host an address of this machine"),
    ],
)
def test_serving_refuses_bad_arguments_quickly_and_says_why(tmp_path, args, message):
    t0 = time.monotonic()
    out = serve_cli("--model-name", "m", *args, cwd=tmp_path)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert message in " ".join(out.stderr.split()), out.stderr  # (typer boxes and wraps its messages)
    assert time.monotonic() - t0 < 60


def test_serving_on_a_port_in_use_says_so(tmp_path):
    """make ui and make serve-best both default to port 5000."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        out = serve_cli("--model-name", "m", "--port", str(port), cwd=tmp_path)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert f"cannot listen on 127.0.0.1:{port}" in out.stderr and "--port" in out.stderr
