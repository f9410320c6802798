"""The leakage check passes causal features and names the column that uses the future."""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
import pytest

from flowork.errors import FloworkError
from flowork.features import Pipeline, leakage_check
from user_code import features

DF = pd.DataFrame(
    {"v": np.sin(np.arange(300) / 7.0) + np.arange(300) / 50, "w": np.cos(np.arange(300) / 3.0)},
    index=pd.date_range("2020-01-01", periods=300, freq="D"),
)


def causal(df):
    return pd.DataFrame({"lag1": df.v.shift(1), "mean7": df.v.rolling(7).mean(), "w": df.w}).dropna()


def with_column(name, make):
    def build(df):
        return causal(df).assign(**{name: make(df)}).dropna()

    return build


LEAKY = {
    "next_value": lambda df: df.v.shift(-1),
    "centred_mean": lambda df: df.v.rolling(5, center=True).mean(),
    "global_zscore": lambda df: (df.v - df.v.mean()) / df.v.std(),
    "bfill": lambda df: df.v.where(np.arange(len(df)) % 2 == 0).bfill(),
}


@pytest.mark.parametrize(
    "build",
    [
        causal,
        functools.partial(features.tabular, target="v", exog=["w"], windows=[7]),
        functools.partial(features.window, target="v", length=10),
        functools.partial(features.prophet_frame, target="v", regressors=["w"]),
    ],
)
def test_causal_features_pass(build):
    p = Pipeline(None, build, "conf/features/x.yaml")
    leakage_check(DF, p, p(DF))


@pytest.mark.parametrize("column", sorted(LEAKY))
def test_leaky_feature_is_named(column):
    p = Pipeline(None, with_column(column, LEAKY[column]), "conf/features/leaky.yaml")
    with pytest.raises(FloworkError, match=rf"leakage: feature column\(s\) \['{column}'\]") as e:
        leakage_check(DF, p, p(DF))
    assert "conf/features/leaky.yaml" in e.value.render()


def test_leaky_clean_step_is_caught():
    p = Pipeline(lambda df: df.interpolate().bfill(), causal, "conf/features/x.yaml")
    df = DF.copy()
    df.iloc[1::2, 0] = np.nan  # gaps everywhere: interpolation at the cut reaches past it
    with pytest.raises(FloworkError, match="leakage"):
        leakage_check(df, p, p(df))


def shifts_its_input(df):
    df.index = df.index + pd.Timedelta(days=1)
    return df


def zeroes_its_input(df):
    df["v"] = 0.0
    return df


@pytest.mark.parametrize("clean", [None, zeroes_its_input, lambda df: df.ffill()])
def test_steps_that_change_their_input_leave_the_callers_frame_and_are_still_checked(clean):
    """clean() gets a copy of the caller's frame, and build() what clean() returned without a second copy (~15 us
    a served request): neither changes the caller's frame, and a build that moves its input's times is refused."""
    raw = DF.copy()
    with pytest.raises(FloworkError, match="timestamps are not in its input"):
        Pipeline(clean, shifts_its_input, "conf/features/x.yaml")(raw)
    pd.testing.assert_frame_equal(raw, DF)
