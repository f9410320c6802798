"""A module whose import fails, as user code with a missing import does (test_run's error table)."""


def f(X: pd.DataFrame, y):  # noqa: F821 - the error under test
    return None
