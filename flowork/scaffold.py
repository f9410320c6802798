"""`flowork init` and `flowork add-model`: a new project, and a new model, without reading flowork's code.

The example project is this repository's own `conf/`, `user_code/` and `data/` (one source of truth): found next to
the package in a source checkout, or under `<prefix>/share/flowork/example` where a wheel installs it.
"""

from __future__ import annotations

import ast
import builtins
import keyword
import re
import shutil
import sys
import tempfile
from datetime import datetime
from importlib import resources
from pathlib import Path

from flowork.errors import FloworkError

EXAMPLE_FILES = ("conf", "user_code", "data")
BLANK_MODELS = ("ridge", "xgb", "darts_nbeats")  # models whose features work on any single numeric series
BLANK_FEATURES = ("seasonal", "windows")  # seasonal: lags and calendar terms fitted to data.freq


def example_source() -> Path:
    here = Path(__file__).resolve().parents[1]
    for candidate in (here, Path(sys.prefix, "share", "flowork", "example")):
        if (candidate / "conf" / "config.yaml").exists() and (candidate / "user_code").is_dir():
            return candidate
    raise FloworkError(
        "the example project is not installed with this flowork",
        fix="install flowork from its source checkout (pip install -e .) or a wheel built from it",
    )


def template(name: str) -> str:
    return resources.files("flowork").joinpath("templates", name).read_text()


def flowork_source() -> str:
    """How the new project's Makefile installs this flowork: its checkout when there is one."""
    root = Path(__file__).resolve().parents[1]
    return f"-e '{root}[all]'" if (root / "pyproject.toml").exists() else "'flowork[all]'"


def init(target: Path, example: str = "temperature", force: bool = False) -> tuple[list[str], list[str], Path | None]:
    """Create a project in `target`; returns (the numbered next steps, the files it replaced, their backup folder).

    The project is assembled apart and then copied in, so that `--force` into an existing project writes only files
    of the same names: the blank example's pruning never touches the user's own files (their data/). A file that
    differs from what flowork writes (the user's code, an edited Makefile) is copied to BACKUP_DIR/<time>/ first:
    `--force` replaces, it never loses work. Files already as flowork writes them are not counted as replaced."""
    if example not in ("temperature", "blank"):
        raise FloworkError(f"unknown example {example!r}", fix="use --example temperature or --example blank")
    if target.exists() and any(target.iterdir()) and not force:
        raise FloworkError(f"{target} is not empty", fix="choose a new directory, or pass --force to write into it")
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", target.resolve().name).strip("-") or "forecast"
    with tempfile.TemporaryDirectory() as tmp:
        staged = Path(tmp)
        steps = assemble(staged, name, example)
        files = sorted(p.relative_to(staged) for p in staged.rglob("*") if p.is_file())
        replaced = [
            f for f in files if (target / f).exists() and (target / f).read_bytes() != (staged / f).read_bytes()
        ]
        backup = backup_files(target, replaced) if replaced else None
        target.mkdir(parents=True, exist_ok=True)
        shutil.copytree(staged, target, dirs_exist_ok=True)
    return steps, [str(f) for f in replaced], backup


BACKUP_DIR = "flowork-backup"  # in the project, listed in its .gitignore


def backup_files(target: Path, files: list[Path]) -> Path:
    """Copy `files` (relative to `target`) to a new folder BACKUP_DIR/<date-time>/, keeping their paths.

    A new folder each time: a second `init --force` must not overwrite the first one's backup."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    backup, n = target / BACKUP_DIR / stamp, 2
    while backup.exists():
        backup, n = target / BACKUP_DIR / f"{stamp}-{n}", n + 1
    for f in files:
        (backup / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(target / f, backup / f)
    return backup


def assemble(target: Path, name: str, example: str) -> list[str]:
    """Write the project `name` into the empty directory `target`; returns the next steps."""
    source = example_source()
    for part in EXAMPLE_FILES:
        shutil.copytree(source / part, target / part, ignore=shutil.ignore_patterns("__pycache__", "local"))
    config = (target / "conf" / "config.yaml").read_text()
    # the keys under `tracking:`, not the words in a comment (line 1 says "flowork experiment: the defaults ...")
    config = re.sub(r"^(  experiment:) \S+", rf"\1 {name}", config, count=1, flags=re.M)
    config = re.sub(r"^(  model_name:) \S+", rf"\1 {name}-forecaster", config, count=1, flags=re.M)
    models = sorted(p.stem for p in (target / "conf" / "model").glob("*.yaml"))
    if example == "blank":
        config, models = make_blank(target, config)
    (target / "conf" / "config.yaml").write_text(config)
    steps = blank_steps() if example == "blank" else example_steps()
    data_file = "data/YOUR_FILE.csv" if example == "blank" else "data/seattle_weather_daily.csv"
    (target / "README.md").write_text(
        template("README.md").format(name=name, steps="\n".join(steps), data_file=data_file)
    )
    (target / "Makefile").write_text(
        template("Makefile").format(
            flowork_source=flowork_source(), model_name=f"{name}-forecaster", models=",".join(models)
        )
    )
    (target / ".gitignore").write_text(template("gitignore"))
    # the pins flowork's own install uses (the Makefile's `pip install -c constraints.txt`): without them pip picks
    # hydra-core/omegaconf release candidates and pandas 3
    shutil.copy(source / "constraints.txt", target / "constraints.txt")
    return steps


def make_blank(target: Path, config: str) -> tuple[str, list[str]]:
    """Keep the models and features that work on any single series; the data config is all ??? to fill."""
    conf = target / "conf"
    for path in conf.glob("data/*.yaml"):
        path.unlink()
    (conf / "data" / "main.yaml").write_text(template("blank_data.yaml"))
    for group, keep in (("model", BLANK_MODELS), ("search", BLANK_MODELS), ("features", BLANK_FEATURES)):
        for path in (conf / group).glob("*.yaml"):
            if path.stem not in keep:
                path.unlink()
    for model in BLANK_MODELS:
        path = conf / "model" / f"{model}.yaml"
        path.write_text(path.read_text().replace("features: tabular", "features: seasonal"))
    for model in BLANK_MODELS:  # the seasonal features have no exogenous columns to lag
        search = conf / "search" / f"{model}.yaml"
        search.write_text(re.sub(r"\n  features\.build\.exog_lags:.*", "", search.read_text()))
    for path in (target / "data").iterdir():
        path.unlink()
    (target / "data" / "README.md").write_text(
        "Put your dataset here (csv or parquet) and name it in conf/data/main.yaml (`uri`).\n"
    )
    config = re.sub(r"  - data: \S+", "  - data: main", config)
    config = re.sub(r"  - features: \S+", "  - features: seasonal", config)
    return config, list(BLANK_MODELS)


def example_steps() -> list[str]:
    return [
        "1. `make run` — the example sweep on `data/seattle_weather_daily.csv` (next-day max temperature).",
        "2. `make ui` — look at the runs; `multirun/<sweep>/leaderboard.md` and `best.yaml` summarise the sweep.",
        "3. `make serve-best` — the champion behind a REST endpoint.",
        "4. Your own data: add `conf/data/<name>.yaml` (copy `seattle_weather.yaml`), run with `data=<name>`.",
        "5. Your own model: `flowork add-model NAME --like ridge`, fill in the function, `make check`.",
    ]


def blank_steps() -> list[str]:
    return [
        "1. Put your dataset (csv or parquet) in `data/`.",
        "2. Fill the `???` keys of `conf/data/main.yaml`: `uri`, `time_column`, `freq`, `target.column`.",
        "3. `make check` — every config composes, every `_target_` imports, the contracts and the leakage check "
        "pass on a sample.",
        "4. `make run` — the sweep over ridge, xgb and darts_nbeats; the best is registered as `champion`.",
        "5. Tune features in `conf/features/seasonal.yaml` (lags, windows, calendar cycles) or add your own script to "
        "`user_code/features.py`; add models with `flowork add-model NAME --like ridge`.",
    ]


def add_model(root: Path, name: str, like: str = "ridge") -> list[Path]:
    """conf/model/NAME.yaml, conf/search/NAME.yaml and a training-function stub in user_code/models.py."""
    conf, models_py = root / "conf", root / "user_code" / "models.py"
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name) or keyword.iskeyword(name):
        raise FloworkError(
            f"model name {name!r} is not a lowercase Python identifier starting with a letter (or is a Python "
            "keyword): it names the training function in user_code/models.py, where a leading _ marks private and "
            "special names (__init__)",
            fix="use e.g. my_model",
        )
    if not (conf / "config.yaml").is_file() or not (root / "user_code").is_dir():
        raise FloworkError(
            f"{root} is not a flowork project's root (conf/config.yaml and user_code/ expected here)",
            fix="cd to the project's root (where conf/ and user_code/ are) and run it there, or create a project "
            "first: flowork init DIR",
        )
    if not models_py.is_file():
        raise FloworkError(
            "the project has no user_code/models.py, where the new model's training function goes",
            where=str(models_py),
            fix="restore it (from git or flowork-backup/), or create an empty one: touch user_code/models.py",
        )
    models = sorted(p.stem for p in (conf / "model").glob("*.yaml"))
    like_cfg = conf / "model" / f"{like}.yaml"
    if not like_cfg.exists():
        raise FloworkError(
            f"no model {like!r} to start from",
            where=str(conf / "model"),
            fix=f"use --like with one of {models}" if models else "add a model config conf/model/<name>.yaml first",
        )
    if name in models:
        raise FloworkError(
            f"model {name!r} already exists", where=str(conf / "model" / f"{name}.yaml"), fix="pick another name"
        )
    refuse_bound_name(models_py, name)
    like_text = like_cfg.read_text()
    target = re.search(r"_target_:\s*(\S+)", like_text)
    if target is None:
        raise FloworkError(f"{like_cfg} has no train._target_", fix="start from another model with --like")
    module, function = target.group(1).rsplit(".", 1)
    model_yaml = conf / "model" / f"{name}.yaml"
    model_yaml.write_text(
        f"# {name}: started from the {like} model (flowork add-model); edit its params and features.\n"
        + re.sub(
            r"^name: \S+", f"name: {name}", like_text.replace(target.group(1), f"user_code.models.{name}"), flags=re.M
        )
    )
    search_yaml = conf / "search" / f"{name}.yaml"
    like_search = conf / "search" / f"{like}.yaml"
    search_yaml.parent.mkdir(exist_ok=True)
    search_yaml.write_text(
        f"# Search space and budget of {name} (started from {like}'s): python -m flowork model={name} -m\n"
        + (like_search.read_text() if like_search.exists() else "n_trials: 20\ntimeout: null\nspace: {}\n")
    )
    call = function if module == "user_code.models" else f"_{function}"
    imports = "" if module == "user_code.models" else f"    from {module} import {function} as _{function}\n\n"
    # No annotations and nothing from the module's imports: the stub must run in any models.py (one without
    # `import pandas as pd` or `from typing import Any` would otherwise fail to import, taking every model with it).
    with models_py.open("a") as f:
        f.write(f'''

def {name}(X, y, **params):
    """{name}: fit on X (a pandas DataFrame, one row of features per time, indexed by time) and y (a pandas Series,
    the target `horizon` steps after each row); return a fitted model whose `predict(X)` gives one value per row of
    X, in X's order.

    Fit everything learned from data (scalers, encoders, the estimator) in here, so that it sees the training rows
    of each fold only; import heavy libraries in here. Started as a copy of `{like}`: replace the body with yours.
    """
{imports}    return {call}(X, y, **params)
''')
    return [model_yaml, search_yaml, models_py]


def refuse_bound_name(models_py: Path, name: str) -> None:
    """A FloworkError when `name` is already bound at module level in models.py (an import, a function, a class, a
    global) or is a builtin: `def np(...)` appended to the file would replace numpy for every model in it."""
    text = models_py.read_text()
    try:
        tree = ast.parse(text, filename=str(models_py))
    except SyntaxError as e:
        raise FloworkError(
            f"user_code/models.py is not valid Python: {e.msg}",
            where=f"{models_py}, line {e.lineno}",
            fix="fix the syntax error, then add the model again",
        ) from None
    for node, names in module_bindings(tree):
        if name in names:
            line = text.splitlines()[node.lineno - 1].strip()
            raise FloworkError(
                f"{name!r} is already a name in user_code/models.py (line {node.lineno}: `{line}`): a training "
                "function of that name would replace it for every model in the file",
                where=f"{models_py}, line {node.lineno}",
                fix=f"pick another name, e.g. {name}_model",
            )
    if name in dir(builtins):
        raise FloworkError(
            f"{name!r} is a Python builtin: a training function of that name in user_code/models.py would hide it "
            "from every model in the file",
            fix=f"pick another name, e.g. {name}_model",
        )


def module_bindings(tree: ast.Module) -> list[tuple[ast.stmt, set[str]]]:
    """Each module-level statement that binds names, with the names: imports, defs, classes, assignments, loop
    and `with` targets, including those inside module-level if/try/for/with blocks (not inside defs or classes)."""
    found: list[tuple[ast.stmt, set[str]]] = []

    def visit(statements: list[ast.stmt]) -> None:
        for node in statements:
            names: set[str] = set()
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = {(a.asname or a.name).split(".")[0] for a in node.names}
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                names = {node.name}
            else:  # assignments, for/with targets, walrus: the names stored by the statement's own expressions
                parts = [p for p in ast.iter_child_nodes(node) if not isinstance(p, ast.stmt | ast.excepthandler)]
                names = set().union(*(stored(part) for part in parts))
                for block in ("body", "orelse", "finalbody"):
                    visit(getattr(node, block, []))
                for handler in getattr(node, "handlers", []):  # `except E as e` unbinds e after the block
                    visit(handler.body)
            if names:
                found.append((node, names))

    visit(tree.body)
    return found


def stored(node: ast.AST) -> set[str]:
    """Names an expression (an assignment target, a `with ... as` item) stores in its scope: not the variables of a
    comprehension or the parameters of a lambda, which live in a scope of their own."""
    if isinstance(node, ast.Name):
        return {node.id} if isinstance(node.ctx, ast.Store) else set()
    if isinstance(node, ast.Lambda | ast.ListComp | ast.SetComp | ast.DictComp | ast.GeneratorExp):
        return set()
    return set().union(*(stored(child) for child in ast.iter_child_nodes(node)))
