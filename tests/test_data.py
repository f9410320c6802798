"""Loading any URI and format, and the errors for a broken time axis or a missing column."""

from __future__ import annotations

import functools
import http.server
import os
import re
import threading
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from flowork import data
from flowork.errors import FloworkError
from tests.conftest import ROOT


@functools.cache
def project_config():
    """The project's config as composed from conf/ (~0.3 s: once)."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        return compose("config")


def cfg(uri: str, **kw):
    target = SimpleNamespace(column=kw.pop("target", "temp_max"), horizon=1)
    base = dict(uri=uri, format=None, time_column="date", freq="D", read_options={}, target=target)
    return SimpleNamespace(**(base | kw))


@pytest.fixture
def files(tmp_path: Path, weather: pd.DataFrame) -> Path:
    head = weather.head(50)
    head.to_csv(tmp_path / "w.csv", index=False)
    head.to_csv(tmp_path / "w.csv.gz", index=False)
    head.to_parquet(tmp_path / "w.parquet", index=False)
    head.to_csv(tmp_path / "w.txt", index=False)
    return tmp_path


@pytest.mark.parametrize(
    ("uri", "extra"),
    [
        ("{d}/w.csv", {}),
        ("file://{d}/w.csv", {}),
        ("{d}/w.csv.gz", {}),
        ("{d}/w.parquet", {}),
        ("file://{d}/w.parquet", {}),
        ("{d}/w.txt", {"format": "csv"}),
        ("w.csv", {}),  # relative to the project root
    ],
)
def test_load_uris_and_formats(files, uri, extra):
    df = data.load(cfg(uri.format(d=files), **extra), root=str(files))
    assert len(df) == 50
    assert isinstance(df.index, pd.DatetimeIndex) and df.index.name == "date"
    assert df.index[0] == pd.Timestamp("2012-01-01")
    assert "temp_max" in df.columns and "date" not in df.columns


def test_load_http(files):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(files))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        df = data.load(cfg(f"http://127.0.0.1:{server.server_port}/w.csv"), root="/")
    finally:
        server.shutdown()
    assert len(df) == 50


def broken(weather: pd.DataFrame, how: str) -> pd.DataFrame:
    df = weather.head(20).copy()
    if how == "duplicate":
        df.loc[5, "date"] = df.loc[4, "date"]
    elif how == "unsorted":
        df.loc[[5, 6], "date"] = df.loc[[6, 5], "date"].to_numpy()
    elif how == "unparsable":
        df.loc[3, "date"] = "yesterday"
    elif how == "gaps":  # more steps missing than there are rows: the data's spacing is not data.freq
        df = df.iloc[::3]
    elif how == "header only":
        df = df.head(0)
    elif how == "numbers":
        df["date"] = range(2001, 2001 + len(df))
    return df


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("duplicate", "duplicate timestamps"),
        ("unsorted", "not sorted"),
        ("unparsable", "not timestamps"),
        ("gaps", "not a regular 'D' grid: row 1"),
        ("header only", "the data has no rows"),
        ("numbers", r"holds numbers \(int64, e.g. 2001\), not timestamps"),
    ],
)
def test_time_axis_errors(tmp_path, weather, how, message):
    broken(weather, how).to_csv(tmp_path / "b.csv", index=False)
    with pytest.raises(FloworkError, match=message):
        data.load(cfg(str(tmp_path / "b.csv")), root="/")


@pytest.mark.parametrize(
    ("change", "message", "hint"),
    [
        ({"uri": "nowhere.csv"}, "data file not found", "data.uri"),
        ({"uri": "memory://x.xlsx"}, "cannot tell the format", "data.format"),
        ({"format": "feather"}, "unknown data format 'feather'", "csv"),
        ({"time_column": "day"}, "time column 'day' is not in the data", "'temp_max'"),
        ({"target": "temp"}, "target column 'temp' is not in the data", "'temp_min'"),
        ({"target": "weather"}, "target column 'weather' is not numeric", "numeric"),
        ({"freq": "fortnightly"}, "unknown frequency", "offset alias"),
        ({"freq": "MS"}, "not a regular 'MS' grid: row 1 is 2012-01-02", "the data's own spacing, 'D'"),
        ({"freq": "ME"}, "not on the 'ME' grid: row 0 is 2012-01-01 00:00:00, not a 'ME' step", "own spacing, 'D'"),
        ({"format": "parquet"}, "cannot read", "valid parquet"),
    ],
)
def test_config_errors_name_key_and_fix(files, change, message, hint):
    c = cfg(str(files / "w.csv"))
    for key, value in change.items():
        if key == "target":
            c.target.column = value
        else:
            setattr(c, key, value)
    with pytest.raises(FloworkError, match=message) as e:
        data.load(c, root=str(files))
    assert hint in e.value.render()


def test_a_local_file_is_read_once_until_it_changes(files, weather):
    path = files / "w.csv"
    first = data.load(cfg(str(path)), str(files))
    first.loc[first.index[0], "temp_max"] = -99.0  # a caller changing its frame changes no later load
    second = data.load(cfg(str(path)), str(files))
    assert second["temp_max"].iloc[0] == weather["temp_max"].iloc[0]
    weather.head(60).to_csv(path, index=False)  # the file changes: it is read again
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000_000))
    assert len(data.load(cfg(str(path)), str(files))) == 60


@pytest.mark.parametrize(
    "values",
    [
        ["2012-01-01", "2012-01-02", "2012-01-03"],
        ["2012-01-01 00:00:00", "2012-01-01 01:00:00"],
        ["2012-01-01T00:00:00", "2012-01-02T00:00:00"],
        ["2012-01-01", "2012-01-02 00:00:00"],  # mixed layouts: pandas rejects them, so must flowork
        ["2012-01-01", "yesterday"],
        ["2012-13-01", "2012-14-01"],
        ["01/02/2012", "01/03/2012"],  # not ISO: pandas' own guess
        ["2012-01-01+01:00", "2012-01-02+01:00"],
        [None, "2012-01-01"],
        [],
        # what numpy, which parses ISO times in the fast path, would read otherwise: not dates, past what pandas'
        # nanoseconds hold (numpy wraps 3000 round to 1830), padded, offsets on a middle row, its words
        ["2012-02-28", "2012-02-30"],
        ["2012-01-01", "3000-01-01"],
        ["2012-01-01", " 2012-01-02"],
        ["2012-01-01T00:00:00", "2012-01-01T01:00:00+01:00", "2012-01-01T02:00:00"],
        ["2012-01-01", "NaT"],
    ],
)
def test_time_parsing_is_pandas_own(values):
    """The fast path for ISO timestamps parses exactly like pd.to_datetime, errors included."""
    column = pd.Series(values, dtype=object)
    try:
        expected = pd.to_datetime(column)
    except (ValueError, TypeError) as e:
        with pytest.raises(type(e), match=re.escape(str(e))):
            data.parse_times(column)
    else:
        pd.testing.assert_series_equal(data.parse_times(column), expected)


@pytest.mark.parametrize(
    "values",
    [
        ["2012-01-01", "2012-01-02", "2012-03-01"],
        ["2012-01-01 00:00:00", "2012-01-01 01:00:00"],
        ["2012-01-01T00:00:00", "2262-04-11T23:47:16"],  # up to the last second pandas' nanoseconds hold
    ],
)
def test_iso_times_are_parsed_without_pandas_parser(values, monkeypatch):
    """A served model parses the times of every request: in one of the ISO layouts, numpy reads them in a few
    microseconds, where pd.to_datetime takes ~0.15 ms (about a tenth of a request's own work)."""
    expected = pd.to_datetime(pd.Series(values))

    def slow_path(*args, **kwargs):
        raise AssertionError("pd.to_datetime parsed the times")

    monkeypatch.setattr(pd, "to_datetime", slow_path)
    pd.testing.assert_series_equal(data.parse_times(pd.Series(values, dtype=object)), expected)


@pytest.mark.parametrize(
    "values",
    [
        ["2013-03-09T00:00:00-08:00", "2013-03-10T00:00:00-07:00"],  # a daylight-saving switch: pandas refuses it
        ["2013-03-09T00:00:00Z", "2013-03-10T00:00:00Z"],
        ["2013-03-09T00:00:00+0100", "2013-03-10T00:00:00+0100"],
        pd.to_datetime(["2013-03-09", "2013-03-10"]).tz_localize("America/Los_Angeles"),  # datetimes with a zone
    ],
)
def test_times_with_an_offset_are_read_at_their_wall_clock(values):
    times = data.to_datetime(pd.Series(values))
    assert times.tolist() == [pd.Timestamp("2013-03-09"), pd.Timestamp("2013-03-10")]


AUTUMN_SWITCH = ["2024-10-27T01:00:00+02:00", "2024-10-27T02:00:00+02:00", "2024-10-27T02:00:00+01:00"]


@pytest.mark.parametrize(
    ("values", "time_zone", "expected"),
    [
        # hourly times over the autumn switch (Berlin): the instants they are, where their wall clocks repeat 02:00
        (AUTUMN_SWITCH, "UTC", ["2024-10-26 23:00", "2024-10-27 00:00", "2024-10-27 01:00"]),
        (["2024-10-27T00:00:00Z", "2024-10-27T01:00:00-05:30"], "UTC", ["2024-10-27 00:00", "2024-10-27 06:30"]),
        (["2024-10-27T00:00:00+0100", "2024-10-27T01:00:00"], "UTC", ["2024-10-26 23:00", "2024-10-27 01:00"]),
        # daily times at a zone's midnight stay on its daily grid, on its clock
        (
            ["2024-10-26T00:00:00+02:00", "2024-10-27T00:00:00+02:00", "2024-10-28T00:00:00+01:00"],
            "Europe/Berlin",
            ["2024-10-26", "2024-10-27", "2024-10-28"],
        ),
        (
            ["2024-10-27T00:00:00+0100", "2024-10-28T00:00:00+0100"],
            "Asia/Kolkata",
            ["2024-10-27 04:30", "2024-10-28 04:30"],
        ),
        (
            pd.to_datetime(["2024-10-27 01:00", "2024-10-27 03:00"]).tz_localize("Europe/Berlin"),
            "UTC",
            ["2024-10-26 23:00", "2024-10-27 02:00"],
        ),
        (["27/10/2024 02:00+01:00", "27/10/2024 03:00+01:00"], "UTC", ["2024-10-27 01:00", "2024-10-27 02:00"]),
    ],
)
def test_times_with_an_offset_are_read_on_the_clock_of_data_time_zone(values, time_zone, expected):
    time_format = "%d/%m/%Y %H:%M" if "/" in str(values[0]) else None
    times = data.to_datetime(pd.Series(values), time_format, time_zone)
    assert times.tolist() == [pd.Timestamp(t) for t in expected]


@pytest.mark.parametrize(
    ("time_zone", "fix"),
    [
        (None, "the times carry UTC offsets, dropped (each read at its wall clock), and a daylight-saving switch"),
        ("Europe/Berlin", "the times carry UTC offsets, read in Europe/Berlin, and a daylight-saving switch"),
    ],
)
def test_a_repeated_hour_of_times_with_offsets_says_to_read_them_in_utc(time_zone, fix):
    df = pd.DataFrame({"date": AUTUMN_SWITCH, "x": [1.0, 2.0, 3.0]})
    with pytest.raises(FloworkError, match="duplicate timestamps in 'date', first at row 2") as e:
        data.set_time_index(df, "date", time_zone=time_zone)
    assert fix in e.value.render() and "set `time_zone: UTC` in the data config" in e.value.render()
    assert len(data.set_time_index(df, "date", time_zone="UTC")) == 3  # and that is the fix


@pytest.mark.parametrize(
    ("time_zone", "fix"),
    [("Europe/Berln", "did you mean 'Europe/Berlin'"), ("utc", "did you mean 'UTC'"), ("Mars/Base", "IANA")],
)
def test_an_unknown_time_zone_is_named_with_the_closest_ones(files, time_zone, fix):
    with pytest.raises(FloworkError) as e:
        data.load(cfg(str(files / "w.csv"), time_zone=time_zone), root="/")
    text = e.value.render()
    assert f"unknown time zone {time_zone!r}" in text and "key `data.time_zone`" in text and fix in text


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ([None, "2012-01-02", "2012-01-03"], "empty at row 0"),
        (["2012-01-01", None, "2012-01-03"], "empty at row 1"),
        (["2012-01-01", "2012-01-01", "2012-01-03"], "duplicate timestamps in 'date', first at row 1: 2012-01-01"),
        (["2012-01-02", "2012-01-01"], r"not sorted: row 1 \(2012-01-01 00:00:00\) comes before row 0"),
    ],
)
def test_time_index_names_the_row(values, message):
    df = pd.DataFrame({"date": values, "x": range(len(values))})
    with pytest.raises(FloworkError, match=message):
        data.set_time_index(df, "date")


@pytest.mark.parametrize("sep", [";", "\t", "|"])
def test_a_file_with_another_separator_says_how_to_read_it(tmp_path, weather, sep):
    weather.head(20).to_csv(tmp_path / "b.csv", index=False, sep=sep)
    with pytest.raises(FloworkError) as e:
        data.load(cfg(str(tmp_path / "b.csv")), root="/")
    assert f"read_options: {{sep: {sep!r}}}" in e.value.render()
    options = cfg(str(tmp_path / "b.csv"))
    options.read_options = {"sep": sep}
    assert len(data.load(options, root="/")) == 20  # and that is the fix


@pytest.mark.parametrize(
    ("values", "time_format", "first"),
    [
        (["13/01/2012", "14/01/2012"], "%d/%m/%Y", "2012-01-13"),
        (["05/01/2012", "06/01/2012"], "%d/%m/%Y", "2012-01-05"),  # day first: not pandas' May 1st
        (["2012-01-05", "2012-01-06"], "%d/%m/%Y", "2012-01-05"),  # ISO still parses (a request to a served model)
        (["2012-01-05T00:00", "2012-01-06T00:00"], "%d/%m/%Y", "2012-01-05"),  # any ISO 8601 layout
        (["2012-01-05T00:00:00.000000", "2012-01-06T00:00:00.000000"], "%d/%m/%Y", "2012-01-05"),
        (["2012.01.05 14h", "2012.01.05 15h"], "%Y.%m.%d %Hh", "2012-01-05 14:00"),
    ],
)
def test_time_format_lays_out_the_times(values, time_format, first):
    out = data.set_time_index(pd.DataFrame({"date": values, "x": [1.0, 2.0]}), "date", time_format=time_format)
    assert out.index[0] == pd.Timestamp(first)


@pytest.mark.parametrize(
    ("values", "time_format"),
    [
        (["12/01/2012", "13/01/2012"], None),  # pandas guesses %m/%d/%Y from the first value
        (["2012/13/45", "2012/13/46"], "%d/%m/%Y"),
        (["01/13/2012", "01/14/2012"], "%d/%m/%Y"),  # month first against the layout: refused, not guessed
    ],
)
def test_times_that_do_not_parse_point_at_time_format(values, time_format):
    with pytest.raises(FloworkError) as e:
        data.set_time_index(pd.DataFrame({"date": values, "x": [1.0, 2.0]}), "date", time_format=time_format)
    text = e.value.render()
    assert "data.time_format" in text and "13/01/2012" in text  # where to say it, and an example
    assert "You might want to try" not in text  # pandas' advice is about arguments flowork passes itself


def test_times_written_as_numbers_are_read_with_their_time_format():
    df = pd.DataFrame({"date": [20120131, 20120201], "x": [1.0, 2.0]})
    out = data.set_time_index(df, "date", time_format="%Y%m%d")
    assert list(out.index) == [pd.Timestamp("2012-01-31"), pd.Timestamp("2012-02-01")]


def test_time_index_keeps_the_columns_asked_for():
    df = pd.DataFrame({"b": [1.0, 2.0], "date": ["2012-01-01", "2012-01-02"], "a": ["x", "y"]})
    out = data.set_time_index(df, "date", columns=["a", "b"])
    assert list(out.columns) == ["a", "b"] and out.index.name == "date" and out.index[1] == pd.Timestamp("2012-01-02")
    assert list(data.set_time_index(df, "date").columns) == ["b", "a"]


@pytest.mark.parametrize(
    ("uri", "missing"),
    [
        ("data/seattle_weather_daily.csv", False),  # relative to the project root
        ("data/nope.csv", True),
        ("file:///no/such/file.csv", True),
        ("s3://bucket/weather.csv", False),  # remote: found out when read, not checked ahead
        ("https://example.com/weather.csv", False),
    ],
)
def test_a_sweep_checks_a_local_data_file_exists_before_its_trials(uri, missing):
    check = functools.partial(data.check_found, SimpleNamespace(uri=uri), str(ROOT))
    if missing:
        with pytest.raises(FloworkError, match="data file not found"):
            check()
    else:
        check()


@pytest.mark.parametrize(
    ("values", "warned"),
    [
        (["1.0", "2.5", "x3.0", *["4"] * 17], True),  # a typo among numbers
        (["1.0", "-", *["4"] * 18], True),  # a missing-value code
        (["sun", "rain", *["fog"] * 18], False),  # a label column
        (["1", "2", *["3"] * 18], False),  # numbers only
    ],
)
def test_text_among_numbers_is_pointed_out_when_the_data_is_read(tmp_path, caplog, values, warned):
    dates = pd.date_range("2020-01-01", periods=len(values), freq="D").strftime("%Y-%m-%d")
    pd.DataFrame({"date": dates, "temp_max": range(len(values)), "c": values}).to_csv(tmp_path / "d.csv", index=False)
    with caplog.at_level("WARNING", logger="flowork.data"):
        data.load(cfg(str(tmp_path / "d.csv")), root="/")
    assert ("data column 'c' is read as text" in caplog.text) == warned


@pytest.mark.parametrize(
    ("values", "warned"),
    [
        ([12.5, -9999, *[14.0] * 18], True),  # a missing-value code among temperatures
        ([12.5, 999, *[14.0] * 18], True),
        ([1200.0, 9999, *[1500.0] * 18], False),  # elevations in metres: 9999 may be real
        ([12.5, -9.5, *[14.0] * 18], False),
    ],
)
def test_missing_value_codes_read_as_numbers_are_pointed_out(tmp_path, caplog, values, warned):
    dates = pd.date_range("2020-01-01", periods=len(values), freq="D").strftime("%Y-%m-%d")
    pd.DataFrame({"date": dates, "temp_max": values}).to_csv(tmp_path / "d.csv", index=False)
    with caplog.at_level("WARNING", logger="flowork.data"):
        data.load(cfg(str(tmp_path / "d.csv")), root="/")
    assert ("a missing-value code? read it as missing with data.read_options" in caplog.text) == warned


def on_grid(hours: list[int], freq: str = "h") -> pd.DataFrame:
    times = pd.Timestamp("2024-03-01") + pd.to_timedelta(hours, unit="h")
    return data.on_grid(pd.DataFrame({"x": range(len(hours))}, index=pd.DatetimeIndex(times, name="t")), freq)


@pytest.mark.parametrize(
    ("hours", "freq", "rows", "missing"),
    [
        ([0, 1, 2, 3], "h", 4, 0),  # regular: unchanged
        ([0, 1, 4, 5, 6], "h", 7, 2),  # a gap of two steps: two rows of missing values
        ([0, 2, 4, 6, 8, 10, 14], "2h", 8, 1),
    ],
)
def test_missing_steps_become_rows_of_missing_values(hours, freq, rows, missing, caplog):
    out = on_grid(hours, freq)
    assert len(out) == rows and int(out["x"].isna().sum()) == missing
    assert out.index.name == "t" and (out.index == pd.date_range(out.index[0], periods=rows, freq=freq)).all()
    assert ("no row for" in caplog.text) == bool(missing)


@pytest.mark.parametrize(
    ("hours", "freq", "message"),
    [
        ([0, 1, 2.5, 3], "h", "not a regular 'h' grid: row 2"),  # a time off the grid
        ([0, 10, 20, 30], "h", "not a regular 'h' grid: row 1"),  # data.freq finer than the data: not filled
        ([0, 1, 2, 5, 6, 7], "D", "the data's own spacing, 'h'"),  # hourly rows with a gap, data.freq D
    ],
)
def test_times_off_the_grid_are_not_filled(hours, freq, message):
    with pytest.raises(FloworkError) as e:
        on_grid(hours, freq)
    assert message in e.value.render()


def hours_from(hours: list[int]) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(pd.Timestamp("2024-03-01") + pd.to_timedelta(hours, unit="h"))


@pytest.mark.parametrize(
    ("index", "step"),
    [
        (hours_from([0, 1, 2, 3]), "h"),
        (hours_from([0, 1, 2, 5, 6, 7, 8]), "h"),  # a gap: the most common spacing, not a default of days
        (hours_from([0, 24, 48, 96, 120]), "D"),
        (pd.date_range("2020-01-01", periods=30, freq="MS").delete(12), "MS"),  # months are no fixed time
        (pd.date_range("2020-01-06", periods=30, freq="W-MON").delete(12), "W-MON"),
    ],
)
def test_spacing_of_rows_without_data_freq(index, step):
    assert data.spacing(index) == step


def test_a_file_with_a_missing_day_loads_on_the_daily_grid(tmp_path, weather):
    weather.head(20).drop(index=[7, 8]).to_csv(tmp_path / "g.csv", index=False)
    df = data.load(cfg(str(tmp_path / "g.csv")), root="/")
    assert len(df) == 20 and df["temp_max"].isna().sum() == 2


@pytest.mark.parametrize(
    ("values", "message", "hint"),
    [
        (["12,5", "13,0", "11,25"], "not numeric (dtype object, e.g. '12,5' at", "read_options: {decimal: ','}"),
        (["999.5", "1,000.5", *["998.0"] * 10], "e.g. '1,000.5' at", "read_options: {thousands: ','}"),
        (["12.5", "err", *["13.0"] * 10], "e.g. 'err' at", "read_options: {na_values: ['err']}"),
        (["warm", "cold", "warm"], "e.g. 'warm' at", "forecast a numeric column"),
    ],
)
def test_a_target_read_as_text_says_how_to_read_it_as_numbers(tmp_path, values, message, hint):
    frame = pd.DataFrame({"date": pd.date_range("2020-01-01", periods=len(values)).astype(str), "temp_max": values})
    frame.to_csv(tmp_path / "t.csv", sep=";", index=False)
    c = cfg(str(tmp_path / "t.csv"), read_options={"sep": ";"})
    with pytest.raises(FloworkError, match=re.escape(message)) as e:
        data.load(c, root="/")
    assert hint in e.value.render()


@pytest.mark.parametrize(
    ("change", "hint"),
    [
        ({"target": "load"}, "read_options: {skipinitialspace: true}"),  # header `date, load`
        ({"time_column": "date"}, "spaces around them (' date')"),
        ({"target": "Load"}, "did you mean ' load'?"),
    ],
)
def test_a_column_not_in_the_data_says_which_is_meant(tmp_path, change, hint):
    (tmp_path / "s.csv").write_text("day, date, load\n2020-01-01, x, 3.5\n2020-01-02, y, 4.5\n")
    c = cfg(str(tmp_path / "s.csv"), time_column=change.get("time_column", "day"), freq=None)
    c.target.column = change.get("target", "load")
    with pytest.raises(FloworkError) as e:
        data.load(c, root="/")
    assert hint in e.value.render()


def test_a_parquet_file_indexed_by_time_is_read(tmp_path, weather):
    weather.head(20).assign(date=lambda d: pd.to_datetime(d["date"])).set_index("date").to_parquet(tmp_path / "i.pq")
    df = data.load(cfg(str(tmp_path / "i.pq")), root="/")
    assert len(df) == 20 and df.index.name == "date" and "temp_max" in df.columns


@pytest.mark.parametrize(
    ("freq", "current"),
    [
        ("H", "h"),
        ("T", "min"),
        ("S", "s"),
        ("L", "ms"),
        ("U", "us"),
        ("N", "ns"),
        ("A", "YE"),
        ("Y", "YE"),
        ("M", "ME"),
        ("Q", "QE"),
        ("BM", "BME"),
        ("A-JUN", "YE-JUN"),
        ("2H", "2h"),  # pandas suggests 'h', which is another spacing
        ("15T", "15min"),
        ("AS", "YS"),
        ("h", "h"),  # current aliases: as written, nothing said
        ("D", "D"),
        ("MS", "MS"),
        ("W-SUN", "W-SUN"),
        ("ME", "ME"),
    ],
)
def test_a_deprecated_pandas_alias_in_data_freq_is_read_as_its_current_one_said_once(caplog, freq, current):
    """pandas 2.2+ warns at every use of a deprecated alias (H for h), flowork's and the user functions', which get
    it through ${data.freq}: flowork uses the current one and says once which to write."""
    import copy
    import warnings

    from flowork.schema import validate

    composed = copy.deepcopy(project_config())
    composed.data.freq = freq
    with warnings.catch_warnings(), caplog.at_level("WARNING", logger="flowork.data"):
        warnings.simplefilter("error", FutureWarning)  # a FutureWarning of pandas' would fail the test
        for _ in range(2):  # a sweep validates each study's config while planning, a trial's run() again
            cfg = validate(composed)
            assert cfg.data.freq == cfg.features.clean.freq == cfg.features.build.freq == current
            pd.date_range("2024-01-01", periods=3, freq=cfg.features.build.freq)  # what user code does with it
    said = [r.getMessage() for r in caplog.records if "deprecated" in r.getMessage()]
    expected = [f"data.freq {freq!r} is a pandas alias deprecated since pandas 2.2"] if freq != current else []
    assert [m.split(" (")[0] for m in said] == expected
    assert all(f"write data.freq: {current} in the data config" in m for m in said)
