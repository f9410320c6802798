"""Load the dataset named by `data.uri` and check its time axis.

Any fsspec URI works (local path, file://, http(s)://, s3://, gs://, ...); the result is a frame indexed by the
parsed time column, sorted and unique, or a FloworkError that names the problem.
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset

from flowork.errors import FloworkError
from flowork.notices import warn_once

FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
WHERE = "conf/data/<option>.yaml"
log = logging.getLogger("flowork.data")


# the last local file read and parsed, by path and stamp: (frame, digest)
LOADED: dict[tuple[Any, ...], tuple[pd.DataFrame, int]] = {}


def local_path(uri: str) -> str | None:
    """The file a local URI (a path or file://) names; None for remote URIs."""
    return uri.removeprefix("file://") if uri.startswith("file://") or "://" not in uri else None


def local_stamp(uri: str) -> tuple[int, int] | None:
    """(mtime, size) of a local file, None for remote URIs. A sweep worker loads the same file for every trial
    (~10 ms each here, much of a fast trial); a changed file has a new stamp and is read again."""
    path = local_path(uri)
    try:
        st = os.stat(path) if path else None
    except OSError:
        return None  # read_frame reports it
    return (st.st_mtime_ns, st.st_size) if st else None


def warn_text_among_numbers(df: pd.DataFrame) -> None:
    """A column read as text although nearly all its values are numbers: a typo or a missing-value code in the file,
    which a model later fails on with a message about its own input. Logged, not an error: the column may be meant
    as text (a label)."""
    for column in df.select_dtypes(include=["object", "string"]).columns:
        values = df[column].dropna()
        numbers = pd.to_numeric(values, errors="coerce")
        text = values[numbers.isna()]
        if len(text) and len(text) <= 0.1 * len(values):
            warn_once(
                log,
                "data column %r is read as text: %d of %d values are not numbers (first at %s: %r); fix the file, "
                "or convert the column in features.clean",
                column,
                len(text),
                len(values),
                text.index[0],
                text.iloc[0],
            )


MISSING_CODES = (-99999.0, -9999.0, -999.0, 999.0, 9999.0, 99999.0)  # how many files write "no value"


def warn_missing_codes(df: pd.DataFrame) -> None:
    """A missing-value code read as a number (-9999 among temperatures): the model learns from it as a value and
    the served model's range guard widens to it. Logged, not an error: the value may be real."""
    for column in df.select_dtypes(include="number").columns:
        values = df[column].to_numpy(dtype=float, na_value=np.nan)
        codes = np.isin(values, MISSING_CODES)
        rest = np.abs(values[~codes & np.isfinite(values)])
        if codes.any() and rest.size and np.abs(values[codes]).min() > 10 * max(rest.max(), 1.0):
            first = int(np.argmax(codes))
            warn_once(
                log,
                "data column %r has %d value(s) like %g (first at %s), far outside its other values (up to %g in "
                "size): a missing-value code? read it as missing with data.read_options: {na_values: [%g]}",
                column,
                int(codes.sum()),
                values[first],
                df.index[first],
                rest.max(),
                values[first],
            )


def not_found(uri: str) -> FloworkError:
    return FloworkError(
        f"data file not found: {uri}",
        where=f"{WHERE}, key `data.uri`",
        fix="check the path (relative paths start at the project root) or override it: data.uri=...",
    )


def check_found(data_cfg: Any, root: str) -> None:
    """The error load() would give for a local data file that does not exist, without reading anything: a sweep
    checks before its first trial rather than failing every trial the same way."""
    uri = resolve_uri(str(data_cfg.uri), root)
    path = local_path(uri)
    if path is not None and not os.path.exists(path):
        raise not_found(uri)


def resolve_uri(uri: str, root: str) -> str:
    """Relative local paths are relative to the project root, not to the job's output directory."""
    if "://" in uri or os.path.isabs(uri):
        return uri
    return str(Path(root, uri))


def infer_format(uri: str, given: str | None) -> str:
    if given:
        if given not in set(FORMATS.values()):
            raise FloworkError(
                f"unknown data format {given!r}",
                where=f"{WHERE}, key `data.format`",
                fix=f"use one of {sorted(set(FORMATS.values()))}, or null to infer it from the extension",
            )
        return given
    path = uri.split("?", 1)[0].lower()
    for compression in (".gz", ".bz2", ".zip", ".xz", ".zst"):
        path = path.removesuffix(compression)
    suffix = Path(path).suffix
    if suffix not in FORMATS:
        raise FloworkError(
            f"cannot tell the format of {uri!r} from its extension {suffix or '(none)'}",
            where=f"{WHERE}, key `data.format`",
            fix=f"set data.format to one of {sorted(set(FORMATS.values()))}",
        )
    return FORMATS[suffix]


def read_frame(uri: str, fmt: str, options: dict[str, Any]) -> pd.DataFrame:
    import fsspec

    try:
        with fsspec.open(uri, mode="rb", compression="infer") as f:
            return pd.read_csv(f, **options) if fmt == "csv" else pd.read_parquet(f, **options)
    except FileNotFoundError:
        raise not_found(uri) from None
    except ImportError as e:
        raise FloworkError(
            f"cannot open {uri}: {e}",
            where=f"{WHERE}, key `data.uri`",
            fix="install the fsspec backend for this scheme (s3fs for s3://, gcsfs for gs://, adlfs for az://)",
        ) from None
    except Exception as e:
        raise FloworkError(
            f"cannot read {uri} as {fmt}: {type(e).__name__}: {e}",
            where=f"{WHERE}, keys `data.uri` / `data.format` / `data.read_options`",
            fix="check that the file is a valid " + fmt + " file, or set data.format / data.read_options",
        ) from None


def column_fix(name: str, columns: pd.Index) -> str:
    """How to name a column the data has: the file's names padded with spaces (`a, b` headers), or the closest."""
    import difflib

    names = list(map(str, columns))
    padded = [c for c in names if c != c.strip() and c.strip() == name]
    if padded:
        return (
            f"the file's column names have spaces around them ({padded[0]!r}): set "
            "`read_options: {skipinitialspace: true}` in the data config, or remove the spaces from the file"
        )
    close = difflib.get_close_matches(name.lower(), [c.lower() for c in names], n=1)
    guess = f"did you mean {names[[c.lower() for c in names].index(close[0])]!r}? " if close else ""
    return f"{guess}use one of the columns: {names}"


def set_time_index(
    df: pd.DataFrame,
    time_column: str,
    columns: list[str] | None = None,
    time_format: str | None = None,
    time_zone: str | None = None,
) -> pd.DataFrame:
    """Parse `time_column` (laid out as `time_format`, when given; times with an offset read in `time_zone`, see
    to_datetime) into a sorted, unique DatetimeIndex, or say exactly which rows break it. The result holds `columns`
    (default: every other column), in that order."""
    if time_column not in df.columns:
        only = str(df.columns[0]) if len(df.columns) == 1 else ""
        sep = next((c for c in (";", "\t", "|") if c in only), None)  # one column named "a;b;c": another separator
        raise FloworkError(
            f"time column {time_column!r} is not in the data",
            where=f"{WHERE}, key `data.time_column`",
            fix=f"the file looks {sep!r}-separated: set `read_options: {{sep: {sep!r}}}` in the data config "
            f"(on the command line: '+data.read_options={{sep: \"{sep}\"}}')"
            if sep
            else column_fix(time_column, df.columns),
        )
    column = df[time_column]
    if time_format and pd.api.types.is_integer_dtype(column):  # 20160101 read as a number, laid out as %Y%m%d
        column = column.astype(str)
    first = column.iloc[0] if len(column) else None
    # pandas reads numbers as ns after 1970; JSON requests carry them as numbers or text (pandas' to_json: epoch ms)
    numbers = pd.api.types.is_numeric_dtype(column) and column.notna().any()
    if numbers or isinstance(first, int | float) and first == first or (not time_format and str(first).isdigit()):
        raise FloworkError(
            f"time column {time_column!r} holds numbers ({column.dtype}, e.g. {first}), not timestamps",
            where=f"{WHERE}, key `data.time_column`",
            fix="write the times as dates or datetimes (e.g. 2012-01-01), set data.time_format to their layout "
            "(e.g. '%Y%m%d' for 20120131), or point data.time_column at one that is",
        )
    try:
        times = to_datetime(column, time_format, time_zone)
    except (ValueError, TypeError) as e:
        reason = str(e).split(". You might want to try:")[0]  # pandas then suggests arguments flowork passes itself
        raise FloworkError(
            f"time column {time_column!r} has values that are not timestamps: {reason}",
            where=f"{WHERE}, key `data.time_column`"
            + (", `data.time_format`" if time_format else " (or `data.time_format`)"),
            fix="set data.time_format to the layout of the times (e.g. '%d/%m/%Y' for 13/01/2012), fix those rows "
            "in the data, or point data.time_column at the right column",
        ) from None
    if not strictly_increasing(times):  # the detailed checks only run when something is wrong
        check_times(times, time_column, offsets_read_as=time_zone if any_offset(column) else "")
    out = df.drop(columns=[time_column]) if columns is None else df.take(positions(df.columns, columns), axis=1)
    out.index = pd.DatetimeIndex(times, name=time_column)
    return out


def positions(names: pd.Index, wanted: list[str]) -> list[int] | np.ndarray:
    """Where each of `wanted` is in `names`: one positional take selects them cheaper than by name, and a dict finds
    them in ~2 us, where Index.get_indexer takes ~50 us (serving selects a request's columns per request)."""
    where = {name: i for i, name in enumerate(names.tolist())}
    if len(where) < len(names):  # a name repeated: pandas' own error
        return names.get_indexer(wanted)
    return [where[name] for name in wanted]


# Layouts of the first value whose format pandas would guess anyway (checked for every month and day): parsed with
# that format directly, because pd.to_datetime guesses it with dateutil, ~0.15 ms per call, which serving pays per
# request. Another layout, or a column the format does not fit, goes through plain pd.to_datetime (same errors).
ISO_LAYOUTS = {
    re.compile(r"\d{4}-\d{2}-\d{2}"): "%Y-%m-%d",
    re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}"): "%Y-%m-%d %H:%M:%S",
    re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}"): "%Y-%m-%dT%H:%M:%S",
}


# a UTC offset at the end of an ISO time: Z, +01:00, -0800 (its parts named for `offsets`)
OFFSET = re.compile(r"(?:(?P<utc>Z)|(?P<sign>[+-])(?P<hours>\d{2}):?(?P<minutes>\d{2}))$")


def to_datetime(values: pd.Series, time_format: str | None = None, time_zone: str | None = None) -> pd.Series:
    """Naive timestamps of `values`. With no `time_zone`, read at the wall-clock time they show: an offset or zone
    (...Z, ...-08:00) is dropped, on every row that has one (and a request's offset may change within it, at a
    daylight-saving switch, which pandas refuses to parse as one column). With a `time_zone` (data.time_zone), a time
    with an offset is that instant on the zone's clock: 02:00+02:00 and 02:00+01:00 are 00:00 and 01:00 in UTC, where
    their wall clocks repeat an hour; a time without one is taken as on that clock already."""
    given = values
    ends = (values.iloc[0], values.iloc[-1]) if len(values) else ()
    if any(isinstance(v, str) and OFFSET.search(v) for v in ends):
        values = without_offsets(values)
    try:
        times = parse_times(values, time_format)
    except (ValueError, TypeError):
        if not any_offset(values):
            raise
        times = None
    # offsets on some middle rows only: the layout of the first row did not fit them (or pandas left objects)
    if times is None or (times.dtype == object and any_offset(values)):
        times = parse_times(without_offsets(values), time_format)
    if isinstance(times.dtype, pd.DatetimeTZDtype):  # datetimes with a zone (a frame given to the model in Python)
        return (times.dt.tz_convert(time_zone) if time_zone else times).dt.tz_localize(None)
    return on_clock(times, offsets(given), time_zone) if time_zone else times


def offsets(values: pd.Series) -> pd.Series:
    """The UTC offset each time of `values` carries (+02:00, Z), NaT where it has none. Read here rather than by
    pd.to_datetime(utc=True), which would also take a time without an offset as UTC (not as on data.time_zone's
    clock) and parse the times again, without data.time_format."""
    parts = values.astype(str).str.extract(OFFSET)
    minutes = parts["hours"].astype(float) * 60 + parts["minutes"].astype(float)
    minutes = minutes.where(parts["sign"] != "-", -minutes).mask(parts["utc"].notna(), 0.0)
    return pd.to_timedelta(minutes, unit="min")


def on_clock(wall: pd.Series, offset: pd.Series, time_zone: str) -> pd.Series:
    """`wall` (each time's own clock) on `time_zone`'s clock, for the rows with an `offset`."""
    zoned = offset.notna().to_numpy()
    if not zoned.any():
        return wall
    instants = (wall[zoned] - offset[zoned]).dt.tz_localize("UTC")
    out = wall.copy()
    out[zoned] = instants.dt.tz_convert(time_zone).dt.tz_localize(None)
    return out


def check_time_zone(time_zone: str | None) -> None:
    """A FloworkError for a data.time_zone that is not a time zone's name (Europe/Berln), with the closest ones."""
    import difflib
    import zoneinfo

    if time_zone is None:
        return
    try:
        zoneinfo.ZoneInfo(time_zone)
        pd.Timestamp(0, tz="UTC").tz_convert(time_zone)  # the name as pandas reads it, too
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, KeyError):
        names = {name.lower(): name for name in sorted(zoneinfo.available_timezones())}  # (case matters: utc)
        close = [names[n] for n in difflib.get_close_matches(time_zone.lower(), names, n=3)]
        raise FloworkError(
            f"unknown time zone {time_zone!r}",
            where=f"{WHERE}, key `data.time_zone`",
            fix=(f"did you mean {' or '.join(map(repr, close))}? " if close else "")
            + "use a zone name of the IANA database (UTC, Europe/Berlin, America/Los_Angeles), or null to read each "
            "time at its own wall clock",
        ) from None


def any_offset(values: pd.Series) -> bool:
    """Whether a value is a time with a UTC offset (checked only when parsing failed: ~50 us a request)."""
    return any(isinstance(v, str) and OFFSET.search(v) for v in values.tolist())


def without_offsets(values: pd.Series) -> pd.Series:
    return values.astype(str).str.replace(OFFSET, "", regex=True)


def parse_times(values: pd.Series, time_format: str | None = None) -> pd.Series:
    """pd.to_datetime(values) as laid out by `time_format`, else without pandas' format guess for plain ISO timestamps.
    With a `time_format`, ISO timestamps are accepted too (a request to a served model), nothing else: values that
    fit neither are an error, never parsed by pandas' guess (which would read 01/13/2012 month first)."""
    first = values.iloc[0] if len(values) else None
    pattern = next((lay for lay in ISO_LAYOUTS if lay.fullmatch(first)), None) if isinstance(first, str) else None
    iso = ISO_LAYOUTS.get(pattern) if pattern else None
    error: Exception | None = None
    # with a time_format, any ISO 8601 time is accepted too (2015-11-02T00:00, ...00.000000); pandas parses that
    # family strictly, without guessing
    for layout in (time_format, iso or (time_format and "ISO8601")):
        if layout == iso and pattern and (times := parse_iso(values, pattern)) is not None:
            return times
        if layout:
            try:
                return pd.to_datetime(values, format=layout)
            except (ValueError, TypeError) as e:
                error = error or e  # the user's layout's error says more than ISO's
    if time_format and error is not None:
        raise error
    return pd.to_datetime(values)


def parse_iso(values: pd.Series, pattern: re.Pattern[str]) -> pd.Series | None:
    """Times that all fit `pattern` (one of ISO_LAYOUTS), parsed by numpy: ~5 us on a request's rows, where
    pd.to_datetime takes ~0.15 ms. None when a value does not fit, is no date (2015-02-30), or is past what pandas'
    nanoseconds hold (numpy would wrap year 3000 round to 1830): pd.to_datetime then parses them, with its error."""
    text = values.tolist()
    try:  # the pattern first: numpy alone reads more than the layout ("today", " 2015-01-01", offsets)
        if not all(map(pattern.fullmatch, text)):
            return None
        seconds = np.array(text, dtype="datetime64[s]")
    except (TypeError, ValueError):  # a value that is not text, or not a date
        return None
    times = seconds.astype("datetime64[ns]")
    if (times.astype("datetime64[s]") != seconds).any():
        return None
    return pd.Series(times, index=values.index, name=values.name)


def strictly_increasing(times: pd.Series) -> bool:
    """No NaT, sorted, no duplicates, in a few microseconds (pandas' isna/duplicated/is_monotonic cost ~0.1 ms
    even on 30 rows, which serving pays per request). On int64 nanoseconds NaT is the smallest value, so in a
    strictly increasing array it could only be the first one."""
    if times.dtype.kind != "M":  # e.g. mixed time zones parse to objects: leave it to the detailed checks
        return False
    ns = times.array.asi8
    return len(ns) == 0 or (ns[0] != pd.NaT.value and bool((ns[1:] > ns[:-1]).all()))


def check_times(times: pd.Series, time_column: str, offsets_read_as: str | None = "") -> None:
    """Say which row has no timestamp, repeats one or is out of order. `offsets_read_as`: the data.time_zone times
    with a UTC offset were read in ("": the times carry none), which a repeated or reversed time may come from."""
    zone_fix = ""
    if offsets_read_as != "" and offsets_read_as != "UTC":
        zone_fix = (
            "the times carry UTC offsets, "
            + ("dropped (each read at its wall clock)" if offsets_read_as is None else f"read in {offsets_read_as}")
            + ", and a daylight-saving switch repeats an hour on that clock: set `time_zone: UTC` in the data config "
            "to read them as the instants they are; otherwise "
        )
    if times.isna().any():
        row = int(times.isna().to_numpy().argmax())
        raise FloworkError(
            f"time column {time_column!r} is empty at row {row}",
            fix="remove or fill rows without a timestamp",
        )
    dup = times.duplicated()
    if dup.any():
        raise FloworkError(
            f"duplicate timestamps in {time_column!r}, first at row {int(dup.to_numpy().argmax())}: "
            f"{times[dup].iloc[0]}",
            fix=zone_fix + "aggregate or drop duplicate rows so that each timestamp appears once",
        )
    if not times.is_monotonic_increasing:
        row = int((times.diff() < pd.Timedelta(0)).to_numpy().argmax())
        raise FloworkError(
            f"timestamps in {time_column!r} are not sorted: row {row} ({times.iloc[row]}) comes before "
            f"row {row - 1} ({times.iloc[row - 1]})",
            fix=zone_fix + "sort the data by time",
        )


def check_freq(index: pd.DatetimeIndex, freq: str) -> None:
    try:
        expected = pd.date_range(index[0], periods=len(index), freq=freq)
    except ValueError:
        raise FloworkError(
            f"unknown frequency {freq!r}",
            where=f"{WHERE}, key `data.freq`",
            fix="use a pandas offset alias such as D, h, W, MS, or null to skip the check",
        ) from None
    if not index.equals(expected):
        # the data's own spacing: regular, else the most common one (hourly rows with a gap, data.freq D)
        own = (pd.infer_freq(index) if len(index) >= 3 else None) or common_step(index)
        bad = int((index != expected).argmax())
        off_grid = bad == 0  # the first time is not anchored as the alias is: a month end for MS, ...
        raise FloworkError(
            f"timestamps are not on the {freq!r} grid: row 0 is {index[0]}, not a {freq!r} step (the next one is "
            f"{expected[0]})"
            if off_grid
            else f"timestamps are not a regular {freq!r} grid: row {bad} is {index[bad]}, expected {expected[bad]}",
            where=f"{WHERE}, key `data.freq`",
            fix=f"set data.freq to the data's own spacing, {own!r}"
            if own and to_offset(own) != to_offset(freq)
            else "set data.freq to the data's spacing (a pandas offset alias: D, h, W-SUN, MS, ME, ...), or to null"
            if off_grid
            else "fix or remove the rows off the grid, or set data.freq to null (steps missing from the data are "
            "filled as rows of missing values when at least half of the steps are there)",
        )


def checked_freq(freq: str) -> str:
    """data.freq as flowork uses it: in the current alias. pandas still reads the aliases it deprecated (H, T, S,
    L, U, N, A, Y, M, Q, BM, ...) as the same spacing, but warns at every use, flowork's and the user functions'
    (which get data.freq through ${data.freq}): a FutureWarning each, several a run; and a later pandas refuses
    them. So flowork reads them as pandas does, and says once which alias to write."""
    current = current_alias(freq)
    if current != freq:
        warn_once(
            log,
            "data.freq %r is a pandas alias deprecated since pandas 2.2 (a later pandas refuses it): read as %r, "
            "the same spacing; write data.freq: %s in the data config",
            freq,
            current,
            current,
        )
    return current


def current_alias(freq: str) -> str:
    """`freq` as pandas 2.2+ writes it: a deprecated alias replaced by the current one, anything else as it is."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", FutureWarning)
        try:
            offset = to_offset(freq)
        except ValueError:
            return freq  # check_freq's error names an unknown alias
    deprecated = [str(w.message) for w in caught if issubclass(w.category, FutureWarning)]
    return (suggested_alias(deprecated[0], offset) or offset.freqstr) if deprecated else freq


def suggested_alias(message: str, offset: Any) -> str | None:
    """The alias pandas' deprecation message suggests ('YE' for 'A'; its full spelling is 'YE-DEC'), if it reads
    as `offset` without a warning of its own; None when it does not ('h' for '2H': that is '2h')."""
    found = re.search(r"please use '([^']+)' instead", message)
    if found is None:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        try:
            return found[1] if to_offset(found[1]) == offset else None
        except (ValueError, FutureWarning):
            return None


def common_step(index: pd.DatetimeIndex) -> str | None:
    """The spacing of most of the rows as a pandas alias, when a gap keeps pandas from inferring one: the alias most
    short runs of rows have (MS, W-MON, h: a month is no fixed time), else the most common time between rows
    (None under two rows)."""
    if len(index) < 2:
        return None
    starts = sorted({int(i) for i in np.linspace(0, max(len(index) - 3, 0), num=min(200, len(index)))})
    found = Counter(f for i in starts if len(run := index[i : i + 5]) >= 3 and (f := pd.infer_freq(run)))
    if found:
        return str(found.most_common(1)[0][0])
    return str(to_offset(pd.Series(index).diff().mode().iloc[0]).freqstr)


def on_grid(df: pd.DataFrame, freq: str) -> pd.DataFrame:
    """`df` with a row for every `freq` step from its first time to its last. Missing steps (a meter offline for two
    days) become rows of missing values, for features.clean to fill or leave: `horizon` and the lags count rows, so
    a skipped step would silently shift them. Times off the grid, or a grid the data fills less than half of (a
    data.freq finer than the data's spacing), are an error (check_freq's)."""
    grid = fillable_grid(df.index, freq)
    if grid is None or len(grid) == len(df):
        check_freq(df.index, freq)  # a regular grid passes; anything else is refused, saying why
        return df
    missing = grid.difference(df.index)
    warn_once(
        log,
        "the data has no row for %d of its %d %r steps (first %s): added as rows of missing values, for "
        "features.clean to fill",
        len(missing),
        len(grid),
        freq,
        missing[0],
    )
    return df.reindex(grid)


def fillable_grid(index: pd.DatetimeIndex, freq: str) -> pd.DatetimeIndex | None:
    """Every `freq` step from the first time to the last, when each time is one of them and they are at least half
    present; else None."""
    try:
        grid = pd.date_range(index[0], index[-1], freq=freq, name=index.name)
    except ValueError:  # an unknown alias: check_freq's error says so
        return None
    return grid if index.isin(grid).all() and 2 * len(index) >= len(grid) else None


def spacing(index: pd.DatetimeIndex) -> str:
    """The step between rows as a pandas alias, for data.freq: null: pandas' inferred frequency, else (a gap in the
    rows) the spacing of most of them (common_step), with a warning that it is a guess."""
    own = pd.infer_freq(index) if len(index) >= 3 else None
    if own:
        return own
    step = common_step(index)
    if step is None:
        raise FloworkError(
            "data.freq is null and there are too few rows to tell their spacing",
            where=f"{WHERE}, key `data.freq`",
            fix="set data.freq to the data's spacing (a pandas offset alias: D, h, W-SUN, MS, ...)",
        )
    warn_once(
        log,
        "data.freq is null and the rows are not evenly spaced: the model's forecasts are dated `horizon` steps of "
        "%r (the most common spacing) after their row; set data.freq to the data's spacing (D, h, MS, ...)",
        step,
    )
    return step


THOUSANDS = r"\s*[-+]?\d{1,3}(,\d{3})+(\.\d*)?\s*"  # 1,234.5
DECIMAL_COMMA = r"\s*[-+]?\d*,\d+\s*"  # 12,5


def not_numeric(target: pd.Series) -> FloworkError:
    """The error for a target column read as text, with what to set when its text is numbers written another way:
    thousands separators (1,234.5), a decimal comma (12,5), or a few values such as 'n/a' or 'err' among numbers."""
    values = target.dropna().astype(str)
    text = values[pd.to_numeric(values, errors="coerce").isna()]
    example = f", e.g. {text.iloc[0]!r} at {text.index[0]}" if len(text) else ""
    fix = "forecast a numeric column, or convert it in the data"
    if len(text) and text.str.fullmatch(THOUSANDS).all() and text.str.contains(".", regex=False).any():
        fix = "the numbers have thousands separators: set `read_options: {thousands: ','}` in the data config"
    elif len(text) and text.str.fullmatch(DECIMAL_COMMA).all():
        fix = "the numbers have a decimal comma: set `read_options: {decimal: ','}` in the data config"
    elif 0 < len(text) <= 0.1 * len(values):
        codes = sorted(set(text))[:5]
        fix = f"read the text as missing values with `read_options: {{na_values: {codes}}}`, or fix the file"
    return FloworkError(
        f"target column {target.name!r} is not numeric (dtype {target.dtype}{example})",
        where=f"{WHERE}, key `data.target.column`",
        fix=fix,
    )


def load(data_cfg: Any, root: str) -> pd.DataFrame:
    """The dataset of `data_cfg` as a frame indexed by time, with the target column checked."""
    return load_with_digest(data_cfg, root)[0]


def digest(df: pd.DataFrame) -> int:
    """Identifies a frame's index and values (the per-process caches of built features key on it)."""
    return int(pd.util.hash_pandas_object(df).sum())


def load_with_digest(data_cfg: Any, root: str) -> tuple[pd.DataFrame, int]:
    """load(), and the frame's digest: computed once per file read, not once per trial."""
    uri = resolve_uri(data_cfg.uri, root)
    fmt, options = infer_format(uri, data_cfg.format), dict(data_cfg.read_options or {})
    stamp = local_stamp(uri)
    time_format = getattr(data_cfg, "time_format", None)  # None also for a config from before the key existed
    time_zone = getattr(data_cfg, "time_zone", None)
    check_time_zone(time_zone)
    key = (uri, stamp, fmt, repr(sorted(options.items())), data_cfg.time_column, time_format, time_zone, data_cfg.freq)
    if stamp is not None and key in LOADED:
        cached, frame_digest = LOADED[key]
        df = cached.copy()
    else:
        frame = read_frame(uri, fmt, options)
        if data_cfg.time_column in frame.index.names and data_cfg.time_column not in frame.columns:
            frame = frame.reset_index()  # a parquet file written from a frame indexed by time keeps it as its index
        if len(frame) == 0:
            raise FloworkError(
                f"the data has no rows (columns {list(map(str, frame.columns))})",
                where=f"{WHERE}, key `data.uri`",
                fix="point data.uri at a file with observations below its header",
            )
        df = set_time_index(frame, data_cfg.time_column, time_format=time_format, time_zone=time_zone)
        if data_cfg.freq:
            df = on_grid(df, data_cfg.freq)
        warn_text_among_numbers(df)
        warn_missing_codes(df)
        frame_digest = digest(df)
        if stamp is not None:
            LOADED.clear()  # one dataset per process is the common case; never grow without bound
            LOADED[key] = df.copy(), frame_digest
    column = data_cfg.target.column
    if column not in df.columns:
        raise FloworkError(
            f"target column {column!r} is not in the data",
            where=f"{WHERE}, key `data.target.column`",
            fix=column_fix(column, df.columns),
        )
    if not pd.api.types.is_numeric_dtype(df[column]):
        raise not_numeric(df[column])
    return df, frame_digest
