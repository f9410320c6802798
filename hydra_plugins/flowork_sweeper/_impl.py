"""The sweep, in the main process: plan one study per model, start the workers, close what dies, pick the champion.

1. `plan`: compose each model's config (fixed command-line keys included), build its search space, create or
   resume its Optuna study and its MLflow run under the sweep's run (the tracking store is created here, once,
   before any worker can race to create it).
2. `launch`: `workers` long-lived jobs through Hydra's launcher (see `_worker.py`); a progress display polls storage.
3. `finish`: trials left RUNNING by a dead worker become FAIL (Optuna) / FAILED (MLflow); the leaderboard is
   printed and written; the best trial across studies is refit and registered as `champion`.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import time
from pathlib import Path
from typing import Any

from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from flowork.errors import FloworkError

from . import _joblib, _ray
from ._project import local_file
from ._worker import StudyPlan, SweepPlan, TrialWorker, quiet_optuna

log = logging.getLogger("flowork.sweep")
BASIC = "hydra._internal.core_plugins.basic_launcher.BasicLauncher"


class FloworkSweeperImpl:
    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.hydra_context, self.task_function, self.config = hydra_context, task_function, config

    def sweep(self, arguments: list[str]) -> Any:
        import signal
        import sys

        def terminate(signum: int, frame: Any) -> None:
            raise KeyboardInterrupt  # `kill`, `docker stop`: stop as Ctrl-C does, workers included

        previous = signal.signal(signal.SIGTERM, terminate)
        try:
            return self._sweep(arguments)
        except FloworkError as e:
            if os.environ.get("FLOWORK_TRACEBACK"):
                raise
            print(f"flowork: error: {e.render()}\n(set FLOWORK_TRACEBACK=1 to see the traceback)", file=sys.stderr)
            sys.exit(2)
        except KeyboardInterrupt:
            if os.environ.get("FLOWORK_TRACEBACK"):
                raise
            name = getattr(self, "name", None)  # the resolved name (a default ${now:...} differs each time)
            resume = f"the same command with sweep.name={name}" if name else "the same command"
            print(
                f"flowork: sweep {name or ''} interrupted: its finished trials are kept; the ones it was running are "
                f"closed when it resumes (kept if their runs completed).\nResume it: {resume}",
                file=sys.stderr,
            )
            sys.exit(130)
        finally:
            signal.signal(signal.SIGTERM, previous)

    def _sweep(self, arguments: list[str]) -> Any:
        from flowork.select import check_model_name
        from flowork.studies import check_experiment, default_storage, is_sweep_name, open_storage
        from flowork.tracking import Tracker, tracker_for

        # a Ray cluster is reached (or not) before any study or run exists; its CPUs size the workers
        slots = _ray.connect(self.config) if _ray.uses_ray(self.config) else None
        name = self.name = str(self.config.sweep.name)  # resolved once: ${now:...} must not change between workers
        if not is_sweep_name(name):
            raise FloworkError(
                f"sweep.name={name!r} does not name one folder under multirun/",
                where="the command line (or conf/config.yaml), key `sweep.name`",
                fix="use a name without / or \\, e.g. sweep.name=weekly_run",
            )
        sweep_dir = str(self.config.hydra.sweep.dir)
        fresh = not Path(sweep_dir).exists()
        Path(sweep_dir).mkdir(parents=True, exist_ok=True)
        root = os.getcwd()
        warming = _joblib.warm_workers(self.config)  # the launcher's workers start while this process plans
        model_name = str(self.config.tracking.model_name) if self.config.sweep.select else None
        tracker: Tracker | None = None
        try:
            # absolute: a worker may start in another directory (a Ray node starts where `ray start` ran)
            storage_url = self.config.sweep.storage or default_storage(os.path.abspath(sweep_dir))
            storage = open_storage(storage_url)
            check_experiment(storage, name, str(self.config.tracking.experiment))  # before the tracker creates it
            if self.workers_on_this_machine():  # tracked by a process of its own (tracking_service.py)
                from flowork.tracking_service import queued_tracker

                tracker = queued_tracker(self.config.tracking, root, model_name)
            else:
                from flowork.tracking_service import discard_prestarted

                discard_prestarted()
                if model_name is not None:
                    check_model_name(model_name)
                tracker = tracker_for(self.config.tracking, root)
            board = self._run_sweep(arguments, name, sweep_dir, root, warming, slots, tracker, storage, storage_url)
        except BaseException:
            if warming is not None:  # the workers, and their temp folders, go with the sweep
                warming.join()  # (a worker half-started when it is released prints a traceback)
                _joblib.release_workers()
            if tracker is not None:
                with contextlib.suppress(FloworkError):  # the error on its way out says more
                    tracker.close()
            if fresh:
                remove_if_unused(Path(sweep_dir))
            raise
        tracker.close()  # a queued tracker: returns once every write is applied
        return board

    def _run_sweep(self, arguments, name, sweep_dir, root, warming, slots, tracker, storage, storage_url) -> Any:
        from hydra.core.plugins import Plugins
        from optuna.trial import TrialState

        from flowork.select import champion, leaderboard, write_leaderboard
        from flowork.studies import Presence, close_orphans, reruns_waiting
        from flowork.tracking import tracker_for

        uri = tracker.uri
        quiet_optuna()
        plan, sweep_run = self.plan(arguments, name, storage, storage_url, tracker, uri)
        for s in plan.studies:  # a resumed sweep: what the stopped one left running is kept if complete, else closed
            study = load_study(storage, s.name)
            keep = owned_elsewhere(study, s, tracker)  # another command running the sweep now owns them
            for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                if t.number not in keep:
                    self.told_from_run(study, s, t, tracker)
            for t in close_orphans(study, "closed when the sweep resumed", keep):
                if rid := run_of(tracker, s, t):
                    tracker.end(rid, "KILLED")
            tracker.kill_running_children(s.run_id, keep)
        presence = Presence([load_study(storage, s.name) for s in plan.studies])

        workers = self.worker_count(plan, slots)
        extra = _ray.worker_overrides(self.config, sweep_dir) if slots else []
        if warming is not None:
            warming.join()
        worker = TrialWorker(plan, self.hydra_context, self.task_function, self.config)
        # One worker in this very process is called directly: a launcher would compose the worker's config again
        # and wrap it in a job of its own (~0.1 s) only to run it right here.
        here = workers == 1 and self.trials_in_this_process(slots)
        launcher = None
        if not here:
            launcher = Plugins.instance().instantiate_launcher(
                hydra_context=self.hydra_context, task_function=worker, config=self.config
            )
            plan.worker_tempdirs = warming is not None  # joblib's workers, released (killed) by this process
            if tracker.writes_later:
                # The workers write through this sweep's tracking process too when the store is a local file (it
                # takes one writer at a time anyway); to a server, their own round trips (~60 ms a run) overlap.
                plan.service = tracker.serve_workers() if local_file(tracker.uri) else None
                if plan.service is None:  # they write to the store themselves, once its experiment and runs exist,
                    for s in plan.studies:  # under the studies' MLflow ids (this process's handles are its own)
                        s.run_id = tracker.resolve(s.run_id)
        from flowork.progress import Progress

        try:
            with presence, Progress(plan, storage):
                idle_deaths = 0  # worker deaths with no trial running: the workers themselves fail to start
                for attempt in itertools.count():  # relaunch when a worker process died while budget remains
                    # After a death that took several trials, their reruns go first, one at a time in one worker:
                    # the trial that kills its process then dies alone, and the others complete.
                    n = 1 if plan.reruns_only else workers
                    worker_overrides = [
                        [f"sweep.name={name}", f"hydra.sweep.subdir=.workers/{attempt}_{k}", *extra] for k in range(n)
                    ]
                    try:
                        returns = worker.here() if launcher is None else launcher.launch(worker_overrides, 0)
                        died = False
                    except Exception as e:  # e.g. joblib's TerminatedWorkerError: a trial killed its process
                        log.warning("a worker died (%s: %s); closing its trials", type(e).__name__, e)
                        died = True
                        if plan.service is not None:  # what the dead worker sent is applied before its trials close
                            tracker.wait_for_workers()
                    else:
                        raise_worker_errors(returns)
                    # Ray restarts a dead worker's task and keeps the others: only joblib's deaths take bystanders
                    closed = self.close_dead_trials(plan, storage, tracker, rerun=died and not slots)
                    # (a reruns-only launch that ended normally ran every rerun its studies' budgets and times let it)
                    was_reruns = plan.reruns_only
                    reruns = any(reruns_waiting(load_study(storage, s.name)) for s in plan.studies)
                    plan.reruns_only = reruns and (died or not was_reruns)
                    # Finite: a trial dies at most twice (once more as a rerun), and the second time uses budget.
                    idle_deaths += died and not closed
                    if idle_deaths >= 3 or not (died or closed or plan.reruns_only or was_reruns):
                        break  # (after the reruns, the budget left runs on every worker)
                    if not (plan.reruns_only or self.budget_left(plan, storage)):
                        break
        except KeyboardInterrupt:
            from flowork.studies import process_name

            for s in plan.studies:
                # A Ctrl-C that came while a trial's run was being created (before the trial could guard it) left
                # that run RUNNING: end this command's, not those of another command running the sweep.
                tracker.kill_running_children(s.run_id, owner=process_name())
                tracker.end(s.run_id, "KILLED")
            tracker.end(sweep_run, "KILLED")
            raise
        if warming is not None:
            _joblib.release_workers()  # while this process selects and reports

        board = leaderboard(plan, storage)
        write_leaderboard(board, sweep_dir, str(self.config.metric.name))
        for s in plan.studies:
            tracker.end(s.run_id, "FINISHED")
        ok = [row for row in board if row["best"] is not None]
        trials_of = {s.name: load_study(storage, s.name).get_trials(deepcopy=False) for s in plan.studies}
        # the count a worker stopped the sweep at, not a recount: trials running then may have completed since
        stop = plan.recorded_stop(load_study(storage, plan.studies[0].name)) or plan.too_many_failures(trials_of)
        if stop:
            tracker.end(sweep_run, "FAILED")
            since = plan.failures(trials_of)[1] - stop[1]  # started before the stop (maybe told later)
            raise FloworkError(
                f"sweep {name!r} stopped: {stop[0]} of its {stop[1]} trials failed (more than "
                f"sweep.max_failure_rate={plan.max_failure_rate}"
                + (f"; {since} trial{'s' * (since > 1)} started before the stop finished after it" if since > 0 else "")
                + "); no champion selected"
                + most_common_failure(plan, trials_of),
                where=f"{sweep_dir}/ (each trial's log) and the FAILED runs in MLflow (traceback.txt)",
                fix=f"fix the cause, then resume: the same command with sweep.name={name} (its earlier failures no "
                "longer count); or allow more failures with sweep.max_failure_rate",
            )
        if not ok:
            tracker.end(sweep_run, "FAILED")
            raise FloworkError(
                f"every trial of sweep {name!r} failed; nothing to select" + most_common_failure(plan, trials_of),
                where=f"{sweep_dir}/ (each trial's log) and the FAILED runs in MLflow (traceback.txt)",
                fix="fix the error in the trials' tracebacks, then re-run the same command to resume",
            )
        if not self.ran_trials(plan, storage) and Path(sweep_dir, "best.yaml").exists():
            log.info(
                "sweep %s had no trial left to run: its champion is the one it selected before (%s); "
                "`flowork select --sweep %s` refits it again",
                name,
                Path(sweep_dir, "best.yaml"),
                name,
            )
            tracker.end(sweep_run, "FINISHED")
            return board
        if self.config.sweep.select or self.config.charts.trials != "none":  # these read MLflow: from this process
            sweep_run = tracker.resolve(sweep_run)
            tracker.close()
            tracker = tracker_for(self.config.tracking, root)
        summary = None
        if self.config.sweep.select:
            summary = champion(
                board,
                compose=self.compose,
                tracker=tracker,
                sweep=name,
                parent_run_id=sweep_run,
                sweep_dir=sweep_dir,
                model_name=str(self.config.tracking.model_name),
                promote=str(self.config.sweep.promote),
            )
        if self.config.charts.trials != "none":  # charts.report=false: charts in MLflow, no HTML page
            from flowork.charts.draw import sweep_report

            page = sweep_report(
                tracker=tracker,
                storage=storage,
                rows=board,
                sweep=name,
                sweep_dir=Path(sweep_dir),
                sweep_run=sweep_run,
                champion=summary,
                cfg=self.config,
                root=root,
                compose=self.compose,
            )
            log.info("report: %s", page)
        tracker.end(sweep_run, "FINISHED")
        return board

    def compose(self, overrides: list[str]) -> DictConfig:
        return self.hydra_context.config_loader.load_sweep_config(self.config, overrides)

    def plan(self, arguments, name, storage, storage_url, tracker, uri) -> tuple[SweepPlan, str]:
        """The sweep's studies, checked before any MLflow run is started or reopened (a refused resume leaves the
        store as it was); (plan, the sweep's run)."""
        import optuna

        from flowork import notices
        from flowork.data import check_found
        from flowork.schema import validate
        from flowork.search import build_space, check_space_keys, key_of, overrides_of, split_arguments
        from flowork.studies import EXPERIMENT, study_name
        from flowork.tracking import redact_overrides

        models, sweeps, plain = split_arguments(arguments)
        sampler = OmegaConf.to_container(self.config.sweep.sampler, resolve=True)
        pruner = OmegaConf.to_container(self.config.sweep.pruner, resolve=True) if self.config.sweep.pruner else None
        check_sampler_and_pruner(sampler, pruner)
        plain = [o for o in plain if key_of(o) != "sweep.name"]  # set once, resolved, below
        models = models or [str(self.config.model.name)]
        fixed = {key_of(o) for o in plain}
        secret = [key_of(o) for o, shown in zip(plain, redact_overrides(plain), strict=True) if o != shown]
        if secret:  # the trials are rebuilt from their overrides on resume and by `flowork select`
            log.warning(
                "%s: a credential on the command line is kept as given in the sweep's Optuna storage (hidden in "
                "MLflow and the sweep's files); give it as an environment variable instead: key='${oc.env:VAR}'",
                ", ".join(secret),
            )
        studies = []
        base = [f"sweep.name={name}"]
        for model in models:
            # trials log metrics, not models: only the champion's refit logs one (select.py turns it back on)
            overrides = [*base, f"model={model}", *self.applicable(model, plain, models), "tracking.log_model=false"]
            composed = self.compose(overrides)
            cfg = validate(composed)
            try:
                check_found(cfg.data, os.getcwd())  # a wrong data.uri fails here, not in every trial
            except FloworkError as e:
                e.name_options(composed.hydra.runtime.choices)
                raise
            show_data_warnings(cfg)
            where = f"conf/search/{model}.yaml"
            if cfg.search.n_trials < 1 or (cfg.search.timeout is not None and cfg.search.timeout <= 0):
                raise FloworkError(
                    f"study of {model} has no budget: search.n_trials={cfg.search.n_trials}, "
                    f"search.timeout={cfg.search.timeout}",
                    where=f"{where} (or the command line)",
                    fix="set search.n_trials to 1 or more, and search.timeout to seconds > 0 or null",
                )
            space = build_space(
                cfg.search.space, {k: d for k, d in sweeps.items() if has_key(cfg, k)}, fixed, where=where
            )
            check_space_keys(cfg, [k for k in [*space.params, *space.fixed] if k not in sweeps], model, where)
            check_problem_fixed(space.params, where)
            overrides += overrides_of(space.fixed)
            if space.fixed:  # plain values in the search file are part of every trial's config
                composed = self.compose(overrides)
            sname = study_name(name, model)
            study = optuna.create_study(
                study_name=sname,
                storage=storage,
                load_if_exists=True,
                direction=str(cfg.metric.direction),
            )
            if study.direction.name.lower() != str(cfg.metric.direction):
                raise FloworkError(
                    f"study {sname} was created to {study.direction.name.lower()} but metric.direction is "
                    f"{cfg.metric.direction}",
                    fix="use a new sweep.name for a different metric",
                )
            same_setup(study, setup_of(cfg, space.params), name)
            if EXPERIMENT not in study.user_attrs:  # where the sweep's runs are, for its resumes (check_experiment)
                study.set_user_attr(EXPERIMENT, str(self.config.tracking.experiment))
            deadline = time.time() + cfg.search.timeout if cfg.search.timeout else None
            studies.append(
                StudyPlan(
                    model,
                    sname,
                    overrides,
                    space.params,
                    cfg.search.n_trials,
                    deadline,
                    "",
                    composed,
                    first=len(study.get_trials(deepcopy=False)),
                )
            )
            log.info("study %s: %d trials, space %s", sname, cfg.search.n_trials, sorted(space.params))
        unused = [k for k in sweeps if not any(k in s.params for s in studies)]
        if unused:
            raise FloworkError(
                f"swept key(s) {unused} exist in none of the models' configs",
                fix="check the key names with `python -m flowork model=NAME --cfg job`",
            )
        sweep_run = tracker.find_or_start(name, {"flowork.sweep": name, "flowork.role": "sweep"}, None)
        for s in studies:
            tags = {"flowork.sweep": name, "flowork.study": s.name, "flowork.role": "study"}
            s.run_id = tracker.find_or_start(s.model, tags, sweep_run)
        # after every check and the sweep's runs: a refused resume leaves the saved configs as they were, and a new
        # sweep stopped before its runs exist leaves no folder in multirun/ (remove_if_unused)
        save_study_configs(studies)
        sweep_plan = SweepPlan(
            sweep=name,
            storage=storage_url,
            studies=studies,
            sampler=sampler,
            pruner=pruner,
            seed=int(self.config.seed),
            max_failure_rate=float(self.config.sweep.max_failure_rate),
            tracking={
                "uri": uri,
                "experiment": str(self.config.tracking.experiment),
                "artifact_location": self.config.tracking.artifact_location,
            },
            shown=frozenset(notices.SHOWN),
            charts=str(self.config.charts.trials),
            charts_dir=str(Path(str(self.config.hydra.sweep.dir), "charts", "trials")),
            unit=str(self.config.data.target.get("unit") or self.config.data.target.column),
        )
        return sweep_plan, sweep_run

    def applicable(self, model: str, plain: list[str], models: list[str]) -> list[str]:
        """Command-line keys under `model.` and `features.` apply to the models that have them
        (model.params.max_depth=6 with model=ridge,xgb fixes xgb's depth and leaves ridge alone; see
        search.widen); `+key` adds a key to every model; a key no model has is an error (a typo)."""
        from flowork.search import MODEL_SPECIFIC, key_of

        general = [o for o in plain if not key_of(o).startswith(MODEL_SPECIFIC)]
        specific = [o for o in plain if key_of(o).startswith(MODEL_SPECIFIC)]
        if not specific:  # the common case: no composition needed (~0.3 s a model here)
            return general
        cfg = self.compose([f"model={model}", *general])
        added = [o for o in specific if o.startswith("+") and not o.startswith("++")]
        keep = [o for o in specific if o in added or has_key(cfg, key_of(o))]
        for o in specific:
            if o not in keep and not any(has_key(self.compose([f"model={m}"]), key_of(o)) for m in models):
                raise FloworkError(
                    f"`{o.lstrip('+')}`: none of the models swept ({', '.join(models)}) has the key {key_of(o)!r}",
                    fix="check the key with `python -m flowork model=NAME --cfg job`",
                )
        return [*general, *keep]

    def workers_on_this_machine(self) -> bool:
        """Whether the launcher runs the workers here: in this process (basic) or in its child processes (joblib);
        Ray's may run on other machines."""
        return OmegaConf.select(self.config, "hydra.launcher._target_") in {BASIC, _joblib.JOBLIB}

    def trials_in_this_process(self, slots: int | None) -> bool:
        """Whether the launcher runs the workers in this very process: Hydra's basic launcher always does (one
        after the other), joblib's with a single job."""
        launcher = OmegaConf.select(self.config, "hydra.launcher._target_")
        return launcher == BASIC or (launcher == _joblib.JOBLIB and self.configured_workers(slots) == 1)

    def configured_workers(self, slots: int | None) -> int:
        """sweep.workers, else the launcher's: Ray's worker slots (cluster CPUs), joblib's n_jobs, 1 for basic."""
        workers = self.config.sweep.workers or slots
        if workers is None:
            n_jobs = OmegaConf.select(self.config, "hydra.launcher.n_jobs", default=None)
            workers = (os.cpu_count() or 1) if n_jobs == -1 else (n_jobs or 1)
        return int(workers)

    def worker_count(self, plan: SweepPlan, slots: int | None = None) -> int:
        workers = self.configured_workers(slots)
        total = sum(s.n_trials for s in plan.studies)
        return max(1, min(int(workers), total))

    def budget_left(self, plan: SweepPlan, storage: Any) -> bool:
        from flowork.studies import budget_used

        return any(
            budget_used(load_study(storage, s.name).get_trials(deepcopy=False)) < s.n_trials for s in plan.studies
        )

    def close_dead_trials(self, plan: SweepPlan, storage: Any, tracker: Any, rerun: bool) -> bool:
        """Close the trials RUNNING after every worker returned: their process died. When one joblib worker dies,
        the executor stops the others too, and which of the trials running then killed its process is unknown: with
        `rerun` and several of them, each runs once more (studies.close_after_worker_death); a lone one is FAIL."""
        from optuna.trial import TrialState

        from flowork.studies import close_after_worker_death

        running, keep = 0, {}
        for s in plan.studies:
            study = load_study(storage, s.name)
            keep[s.name] = owned_elsewhere(study, s, tracker)
            for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                if t.number not in keep[s.name]:
                    running += not self.told_from_run(study, s, t, tracker)
        for s in plan.studies:
            study = load_study(storage, s.name)
            for t, again in close_after_worker_death(study, rerun and running > 1, keep[s.name]):
                log.warning("%s trial %d: its worker process died%s", s.model, t.number, "; it runs again" * again)
                if rid := run_of(tracker, s, t):
                    note = "the process running this trial died (killed, out of memory or crashed)"
                    if again:
                        note += "; it stopped the trials of the other workers too: this one runs again"
                    tracker.log_text(rid, note, "traceback.txt")
                    tracker.end(rid, "FAILED")
        return running > 0

    def ran_trials(self, plan: SweepPlan, storage: Any) -> bool:
        """Whether this command ran any trial (a finished sweep's command run again runs none)."""
        return any(
            t.number >= s.first and t.state.is_finished()
            for s in plan.studies
            for t in load_study(storage, s.name).get_trials(deepcopy=False)
        )

    def told_from_run(self, study: Any, s: StudyPlan, trial: Any, tracker: Any) -> bool:
        """Tell a RUNNING trial COMPLETE from its MLflow run when that run completed: a worker tells a trial only
        once its run's writes are applied, so one that died (or a sweep that was stopped) may leave complete trials
        untold. Their work is kept instead of run again."""
        rid = run_of(tracker, s, trial)
        done = tracker.completed_trial(rid, str(self.config.metric.name)) if rid else None
        if done is None:
            return False
        for key, value in (
            ("run_id", rid),
            ("std", done["std"]),
            ("holdout", done["holdout"]),
            ("seconds", done["seconds"]),
        ):
            study._storage.set_trial_user_attr(trial._trial_id, key, value)
        study.tell(trial.number, done["value"])
        log.info("%s trial %d: complete in MLflow (cv %.4g), told to Optuna", s.model, trial.number, done["value"])
        return True


def owned_elsewhere(study: Any, s: StudyPlan, tracker: Any) -> set[int]:
    """Numbers of the RUNNING trials that another command running this sweep now may own (machines sharing
    `sweep.storage`): not this command's to close. A trial whose run does not exist yet may be theirs too."""
    from optuna.trial import TrialState

    from flowork.studies import PROCESS_TAG, others_running

    others = others_running(study)
    if not others:
        return set()
    keep = set()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        rid = run_of(tracker, s, t)
        if (tracker.run_tags(rid).get(PROCESS_TAG) if rid else None) in others | {None}:
            keep.add(t.number)
    return keep


def run_of(tracker: Any, s: StudyPlan, trial: Any) -> str | None:
    """The MLflow run of a trial: its `run_id`, or (not told to Optuna yet) the run tagged with its number."""
    return trial.user_attrs.get("run_id") or tracker.find_trial_run(s.run_id, trial.number)


def raise_worker_errors(returns: Any) -> None:
    """A worker's own failure (not a trial's: those are recorded and the sweep goes on) is a bug or a broken
    setup (storage, tracking); surface it instead of ending with an empty leaderboard."""
    from hydra.core.utils import JobStatus

    for ret in returns:
        if ret.status == JobStatus.FAILED:
            error = ret._return_value
            if interrupted(error):
                raise KeyboardInterrupt from error
            if isinstance(error, FloworkError):
                raise error
            raise RuntimeError(f"a sweep worker failed: {type(error).__name__}: {error}") from error


def interrupted(error: BaseException | None) -> bool:
    """Whether Ctrl-C led to `error`: cleanup code that fails on its way out of a KeyboardInterrupt (a library's
    `finally`) replaces it with its own error, which is then no worker failure to report but the user's Ctrl-C."""
    while error is not None:
        if isinstance(error, KeyboardInterrupt):
            return True
        error = error.__context__
    return False


def save_study_configs(studies: list[StudyPlan]) -> None:
    """Each study's composed config next to its trials, <sweep dir>/<model>/.hydra/config.yaml (`flowork report`
    draws with the charts settings it holds). Written by the sweep's own process whatever the launcher: a Ray worker
    running in a shipped copy of the project would write it into that copy, on its node."""
    from flowork.tracking import redact

    for s in studies:
        if s.config is None or s.config.hydra.output_subdir is None:
            continue
        task = OmegaConf.masked_copy(s.config, [key for key in s.config if key != "hydra"])
        folder = Path(str(s.config.hydra.sweep.dir), s.model, str(s.config.hydra.output_subdir))
        folder.mkdir(parents=True, exist_ok=True)
        plain = OmegaConf.to_container(task, enum_to_str=True)  # interpolations (${oc.env:...}) kept as written
        folder.joinpath("config.yaml").write_text(OmegaConf.to_yaml(redact(plain)))


def show_data_warnings(cfg: Any) -> None:
    """Load a study's data and plan its backtest, as each trial does, so that what they warn about (a gap in the
    data, rows after the target's last value) is shown here, once, instead of once by each worker process: the
    workers are told it was shown (SweepPlan.shown). An error is each trial's to report, as before."""
    from flowork import backtest, data

    with contextlib.suppress(FloworkError):
        raw = data.load(cfg.data, os.getcwd())
        times = backtest.observed_times(raw, str(cfg.data.target.column))
        backtest.plan(
            times, cfg.data.backtest.folds, cfg.data.backtest.min_train, cfg.data.holdout, cfg.data.target.horizon
        )


def has_key(cfg: DictConfig, key: str) -> bool:
    return OmegaConf.select(cfg, key, default=KeyError) is not KeyError


def remove_if_unused(sweep_dir: Path) -> None:
    """A sweep that stopped before its first study existed (a typo, a missing data file) leaves no empty folder with
    an empty journal behind in multirun/: only files with nothing in them are there then."""
    import shutil

    if all(p.is_dir() or p.stat().st_size == 0 for p in sweep_dir.rglob("*")):
        shutil.rmtree(sweep_dir, ignore_errors=True)


def load_study(storage: Any, name: str) -> Any:
    import optuna

    return optuna.load_study(study_name=name, storage=storage)


SETUP = "flowork.setup"  # study user attribute: what its trials must share to be compared


def setup_of(cfg: DictConfig, searched: dict[str, Any]) -> dict[str, str]:
    """What makes a study's trials comparable: the problem (data, target, backtest protocol) and the metric that
    scores it, flattened and resolved. Other features or params are other candidates, not another problem."""
    from flowork.tracking import flatten

    node = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    setup = flatten({k: node[k] for k in ("data", "metric") if k in node})  # type: ignore[index]
    return {k: v for k, v in setup.items() if k not in searched}


def check_sampler_and_pruner(sampler: Any, pruner: Any) -> None:
    """A typo in sweep.sampler or sweep.pruner fails here, before the sweep's runs exist, not in every worker."""
    from flowork import instantiate

    instantiate.bind(sampler, where="sweep.sampler", call_args=0)
    if pruner:
        instantiate.bind(pruner, where="sweep.pruner", call_args=0)()


def check_problem_fixed(searched: dict[str, Any], where: str) -> None:
    """The problem (data, target, backtest) and the metric are not hyperparameters: one study would compare a 7-day
    forecast with 1-day ones, or an RMSE with MAEs, and pick the champion across them."""
    problem = sorted(k for k in searched if k.split(".", 1)[0] in ("data", "metric"))
    if problem:
        raise FloworkError(
            f"{problem} would be searched, but the data, target, backtest and metric define the problem every "
            "trial of a sweep is compared on",
            where=f"the command line or {where}",
            fix="run one sweep per value, each with its own name: e.g. data.target.horizon=7 sweep.name=h7 -m",
        )


def same_setup(study: Any, setup: dict[str, str], sweep: str) -> None:
    """A resumed study must go on with the problem and metric it started with: otherwise a 7-day forecast competes
    with 1-day ones, or an RMSE with MAEs, and the champion is picked across both."""
    before = study.user_attrs.get(SETUP)
    if before is None:  # a new study (or one from before this check): its settings from now on
        study.set_user_attr(SETUP, setup)
        return
    if before.get("data.freq"):  # started with a deprecated alias (H), which flowork now reads as the current one (h)
        from flowork.data import current_alias

        before = {**before, "data.freq": current_alias(str(before["data.freq"]))}
    from flowork.tracking import scrub

    # a key a newer flowork added, at its default null, leaves the problem as it was
    changed = sorted(k for k in set(before) | set(setup) if before.get(k, "None") != setup.get(k, "None"))
    if changed:
        shown = scrub("; ".join(f"{k}: {before.get(k, '(unset)')} -> {setup.get(k, '(unset)')}" for k in changed[:8]))
        raise FloworkError(
            f"sweep {sweep!r} is being resumed with other settings than its study {study.study_name} started "
            f"with ({shown}{'; ...' if len(changed) > 8 else ''}): its trials would no longer be comparable",
            fix=f"restore those settings to resume sweep {sweep!r}, or start a new sweep with another sweep.name",
        )


def most_common_failure(plan: SweepPlan, trials_of: dict[str, list[Any]]) -> str:
    """The error most of this command's failed trials raised, quoted: the sweep's last message then says why, not
    only how many (the trials' own messages scrolled by above it)."""
    from collections import Counter

    errors = Counter(
        t.user_attrs["error"]
        for s in plan.studies
        for t in trials_of[s.name]
        if t.number >= s.first and t.state.name == "FAIL" and t.user_attrs.get("error")
    )
    if not errors:
        return ""
    error, n = errors.most_common(1)[0]
    return f"\n{n} of them raised:\n  " + error.replace("\n", "\n  ")
