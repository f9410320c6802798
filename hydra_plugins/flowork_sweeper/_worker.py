"""A long-lived worker job: ask the shared studies for the next trial, run it as its own Hydra job, tell the result.

The launcher (basic, joblib, Ray, ...) starts `workers` of these at once. Hydra's launcher interface is synchronous
(launch a batch, wait for all of it), so launching *trials* as batches would idle a worker behind the slowest
trial of each batch; launching *workers* that pull trials keeps every worker busy until the budgets are spent.
"""

from __future__ import annotations

import contextlib
import copy
import gc
import logging
import math
import os
import random
import socket
import time
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict, read_write
from omegaconf.errors import OmegaConfBaseException

from flowork.tracking import redact_overrides

log = logging.getLogger("flowork.sweep")
UNTOLD = 16  # trials a parallel worker runs ahead of the tracking process's writes at most (see TrialWorker)
# study user attr (on the sweep's first study) + a command's id: [failed, finished] when its failure rate stopped it
STOPPED = "flowork.stopped "


@dataclass
class StudyPlan:
    model: str
    name: str  # Optuna study name: <sweep>/<model>
    overrides: list[str]  # composes this model's trial config (model=..., fixed command-line keys, space fixes)
    params: dict[str, Any]  # key -> Optuna distribution
    n_trials: int
    deadline: float | None  # time.time() after which no new trial starts (search.timeout)
    run_id: str  # MLflow run of the study (parent of its trials)
    # The study's config as the sweep composed it (hydra node included): a worker in the same project starts from it
    # instead of composing it again (~0.3 s a study and worker, while every process is still starting up).
    config: DictConfig | None = None
    first: int = 0  # number of the study's first trial of this command: the failure rate counts from there


@dataclass
class SweepPlan:
    sweep: str
    storage: str
    studies: list[StudyPlan]
    sampler: Any  # config node of the sampler
    pruner: Any
    seed: int
    max_failure_rate: float
    min_trials_for_rate: int = 4
    tracking: dict[str, Any] = field(default_factory=dict)  # uri, experiment, artifact_location
    charts: str = "best"  # "all": every trial's performance charts, drawn by the worker after the trial
    charts_dir: str = ""
    unit: str = ""
    sweep_pid: int = field(default_factory=os.getpid)  # the sweep's own process
    sweep_host: str = field(default_factory=socket.gethostname)
    # where its workers send their MLflow writes: the sweep's tracking process (flowork/tracking_service.py), for
    # workers on this machine; None: they write to MLflow themselves (Ray's)
    service: tuple[str, bytes] | None = None
    # the one worker relaunched after a worker death that took several trials runs only their reruns
    reruns_only: bool = False
    # joblib's workers, killed when done: each keeps its temp files in a folder the sweep removes (_joblib.py)
    worker_tempdirs: bool = False
    # the warnings about the data the sweep's process showed while planning: its workers do not show them again
    shown: frozenset[str] = frozenset()
    # this sweep command, whichever process or machine its workers run on: its failure stop is its own, so a resume
    # (a new command, maybe with the same pid in a container) is not stopped by the stop of the command before it
    command: str = field(default_factory=lambda: uuid.uuid4().hex)

    def too_many_failures(self, trials_of: dict[str, list[Any]]) -> tuple[int, int] | None:
        """(failed, finished) trials of this command, across studies, once more than max_failure_rate of them
        failed; else None. A resumed sweep's earlier failures do not count: it resumes once their cause is fixed."""
        failed, finished = self.failures(trials_of)
        too_many = finished >= self.min_trials_for_rate and failed / max(finished, 1) > self.max_failure_rate
        return (failed, finished) if too_many else None

    def failures(self, trials_of: dict[str, list[Any]]) -> tuple[int, int]:
        """(failed, finished) trials of this command, across studies."""
        from flowork.studies import counted

        failed = finished = 0
        for s in self.studies:
            trials = [t for t in trials_of[s.name] if t.number >= s.first]
            finished += sum(1 for t in trials if t.state.is_finished())
            failed += sum(1 for t in trials if t.state.name == "FAIL" and counted(t))
        return failed, finished

    def recorded_stop(self, first_study: Any) -> tuple[int, int] | None:
        """(failed, finished) when one of this command's workers stopped it for its failures (record_stop), else
        None. `first_study`: the sweep's first study."""
        stop = first_study.user_attrs.get(STOPPED + self.command)
        return (int(stop[0]), int(stop[1])) if stop else None

    def record_stop(self, first_study: Any, stop: tuple[int, int]) -> None:
        """Record in the shared storage (all a Ray worker on another machine shares) that the failure rate stopped
        this command: its other workers then stop too, and the sweep ends quoting this count, whatever the trials
        still running when it was seen do to the rate."""
        first_study.set_user_attr(STOPPED + self.command, list(stop))

    def tracker(self) -> Any:
        """The Tracker the trials' run() uses in this process (same store, experiment and artifact location)."""
        from types import SimpleNamespace

        from flowork.tracking import tracker_for

        tracking = SimpleNamespace(**self.tracking)
        if self.connects_to_service():
            from flowork.tracking_service import worker_tracker

            return worker_tracker(tracking, os.getcwd(), self.service)
        return tracker_for(tracking, os.getcwd())

    def in_sweep_process(self) -> bool:
        return os.getpid() == self.sweep_pid

    def sweep_gone(self) -> bool:
        """Whether the sweep's process died (kill -9), on this machine: its workers then stop after their trial
        instead of running the whole budget unsupervised (a Ray worker on another machine cannot tell)."""
        from flowork.studies import pid_alive

        return socket.gethostname() == self.sweep_host and not pid_alive(self.sweep_pid)

    def connects_to_service(self) -> bool:
        """Whether this process's trials write through a connection of its own to the sweep's tracking process."""
        return self.service is not None and not self.in_sweep_process()


@dataclass
class StudyJob:
    """A study's composed config, split as Hydra hands it to a job: the task's config (without `hydra`), the
    composed config it came from (whose `hydra` node HydraConfig serves), and the view HydraConfig holds of it."""

    config: DictConfig
    task: DictConfig
    hydra_view: Any = None
    groups: frozenset[str] = frozenset()  # its config groups (`features`, `model`, ...): a sampled one recomposes
    task_overrides: list[str] = field(default_factory=list)  # hydra.overrides.task as last set (launch_job)

    @classmethod
    def of(cls, config: DictConfig, typed: bool = True) -> StudyJob:
        """`typed`: merge the task's config onto flowork's schema once here rather than in each trial's run()."""
        from flowork.errors import FloworkError
        from flowork.schema import validate

        task = copy.deepcopy(config)
        with read_write(task), open_dict(task):
            del task["hydra"]
        if typed:
            with contextlib.suppress(FloworkError):  # each trial's run() reports it, as a failed trial
                task = validate(task)
        return cls(config, task, groups=frozenset(config.hydra.runtime.choices))


class TrialWorker:
    """The task the launcher runs `workers` times; each call loops over trials until no budget is left."""

    def __init__(self, plan: SweepPlan, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig):
        self.plan, self.hydra_context, self.task_function, self.config = plan, hydra_context, task_function, config
        self.jobs: dict[str, StudyJob] = {}  # composed config of each study, per worker process
        self.relocated = False

    def here(self) -> list[JobReturn]:
        """The sweep's only worker, run in the sweep's process without a launcher: its return as a launcher's."""
        ret = JobReturn(overrides=[], cfg=self.config, working_dir=os.getcwd())
        try:
            ret.return_value = self(self.config, worker=0)
            ret.status = JobStatus.COMPLETED
        except Exception as e:  # as a launcher reports it: raise_worker_errors surfaces it
            ret.return_value = e
            ret.status = JobStatus.FAILED
        return [ret]

    def __call__(self, worker_cfg: DictConfig, worker: int | None = None) -> dict[str, int]:
        import optuna

        from flowork import instantiate, notices
        from flowork.interpolations import cache_parses
        from flowork.studies import open_storage

        quiet_optuna()
        notices.SHOWN.update(self.plan.shown)
        cache_parses()  # a launcher's worker process did not start from flowork's __main__
        from hydra.core.hydra_config import HydraConfig

        from ._project import enter_project

        if worker is None:  # started by a launcher, as its job number k (the task config has no `hydra` node)
            worker = int(HydraConfig.get().job.num)
        # a Ray worker starts elsewhere (another directory, maybe another machine): into the project first; the
        # sweep's own process (basic launcher, one joblib job) is there, its tracking process still creating the store
        if not self.plan.in_sweep_process():
            entered = enter_project(self.hydra_context, self.config, self.plan)
            self.relocated = entered[1] is not self.config  # composed elsewhere: the plan's configs name other paths
            self.hydra_context, self.config = entered
            if self.plan.worker_tempdirs:
                from ._joblib import worker_tempdir

                worker_tempdir(self.plan.sweep_pid)
        storage = open_storage(self.plan.storage)
        studies = {}
        for k, s in enumerate(self.plan.studies):
            sampler = instantiate.bind(self.plan.sampler, where="sweep.sampler", call_args=0)
            seeded = sampler.keywords.get("seed") is not None
            pruner = (
                instantiate.bind(self.plan.pruner, where="sweep.pruner", call_args=0)() if self.plan.pruner else None
            )
            study = optuna.load_study(study_name=s.name, storage=storage, pruner=pruner)
            # distinct seeds per worker and study, and per resume: a resumed study seeded as it started would propose
            # the trials it already ran again (TPE's random start-up trials come first)
            done = len(study.get_trials(deepcopy=False))
            study.sampler = sampler(seed=self.plan.seed + 1000 * worker + k + 100_003 * done) if seeded else sampler()
            studies[s.name] = study
        # What exists now (modules, the composed configs, the studies) lives as long as the sweep: out of the cyclic
        # GC's sight, its full collections stop walking it again and again (~0.1 s of a 40-trial sweep here)
        gc.freeze()
        counts = {"complete": 0, "failed": 0, "pruned": 0}
        rng = random.Random(worker)
        own = HydraConfig.instance().cfg  # the worker job's own, restored once its trials are done
        tracker = self.plan.tracker()
        own_connection = self.plan.connects_to_service()
        # A trial is told to Optuna once its run is complete in MLflow. When a tracking process applies the writes,
        # each trial of a sequential sweep is told after the next one ran: its writes are applied meanwhile, and the
        # first trials do not wait for the tracking process to start. Always exactly one late, so a seeded
        # sequential sweep stays repeatable. A parallel sweep is not repeatable anyway: its workers tell each trial
        # as soon as its run is applied, and wait only with UNTOLD trials in hand (while the tracking process
        # starts, ~2-3 s here, they go on running trials). Not with a pruner: it judges a trial against the complete
        # ones, and the one before would be missing.
        late = UNTOLD if own_connection else 1
        # Reruns after a worker death are told one by one: a rerun that kills its process again leaves no other
        # trial RUNNING, so it alone is FAIL.
        untold = late if tracker.writes_later and self.plan.pruner is None and not self.plan.reruns_only else 0

        def ready(ran: Ran) -> bool:
            return own_connection and tracker.applied(ran.context.run_id)

        pending: list[Ran] = []  # run, not told yet
        orphaned = False
        try:
            while True:
                tracker.check()  # an error of the tracking process stops the sweep between trials
                if orphaned := self.plan.sweep_gone():
                    log.error("the sweep's process (pid %d) is gone: this worker stops", self.plan.sweep_pid)
                    break
                plan = self.next_study(studies, rng)
                if plan is None:
                    break
                if ran := self.run_trial(plan, studies[plan.name]):
                    pending.append(ran)
                while pending and (len(pending) > untold or ready(pending[0])):
                    counts[self.tell(pending.pop(0))] += 1
            while pending:
                counts[self.tell(pending.pop(0))] += 1
            if own_connection:  # every write applied before this worker's job returns (charts are written after
                tracker.close()  # their trial's tell): the sweep then reads what its workers wrote
        finally:
            for ran in pending:  # stopped while the next trial ran: these are complete once their runs are
                with contextlib.suppress(Exception):  # a run failed to be: its trial is run again on resume
                    self.tell(ran)
            if own_connection and not tracker.closed:
                with contextlib.suppress(Exception):  # on the way out with another error
                    tracker.close()
            HydraConfig.instance().cfg = own
        if orphaned:  # its trials told: nothing waits for this process now (nor for the idle executor it is in)
            if self.plan.worker_tempdirs:  # nor does the sweep that would remove its temp folder
                from ._joblib import remove_worker_tempdirs

                remove_worker_tempdirs(self.plan.sweep_pid, own=True)
            logging.shutdown()
            os._exit(1)
        return counts

    def next_study(self, studies: dict[str, Any], rng: random.Random) -> StudyPlan | None:
        """The open study with the smallest share of its budget used, or None when all are done."""
        from flowork.studies import budget_used, reruns_waiting

        first_study = studies[self.plan.studies[0].name]
        if self.plan.recorded_stop(first_study):  # another worker saw too many failures (and said so)
            return None
        trials_of = {name: study.get_trials(deepcopy=False) for name, study in studies.items()}
        if stop := self.plan.too_many_failures(trials_of):
            self.plan.record_stop(first_study, stop)
            log.error("stopping: %d of %d trials failed (sweep.max_failure_rate=%s)", *stop, self.plan.max_failure_rate)
            return None
        open_plans = []
        for s in self.plan.studies:
            if self.plan.reruns_only and not reruns_waiting(studies[s.name]):
                continue
            used = budget_used(trials_of[s.name])
            if used < s.n_trials and (s.deadline is None or time.time() < s.deadline):
                open_plans.append((used / s.n_trials, rng.random(), s))
        return min(open_plans, key=lambda x: x[:2])[2] if open_plans else None

    def run_trial(self, s: StudyPlan, study: Any) -> Ran | None:
        """Ask the study for a trial and run it; None when the study's budget was spent meanwhile."""
        from optuna.trial import TrialState

        from flowork.run import TRIAL, TrialContext
        from flowork.search import overrides_of
        from flowork.studies import EXCESS, PROCESS_TAG, RERUN_OF, budget_used, process_name

        trial = study.ask(fixed_distributions=s.params)
        earlier = [t for t in study.get_trials(deepcopy=False) if t.number < trial.number]
        if budget_used(earlier) >= s.n_trials:  # another worker took the last slot between our check and ask
            trial.set_user_attr(EXCESS, True)
            study.tell(trial, state=TrialState.FAIL)
            return None
        overrides = [*s.overrides, *overrides_of(trial.params)]
        trial.set_user_attr("overrides", overrides)

        def report(value: float, step: int) -> None:
            import optuna

            trial.report(value, step)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at step {step} (value {value:.4g})")

        tags = {
            "flowork.sweep": self.plan.sweep,
            "flowork.study": s.name,
            "flowork.trial": str(trial.number),
            PROCESS_TAG: process_name(self.plan.sweep_host, self.plan.sweep_pid),  # the command that owns the trial
        }
        if (rerun_of := trial.user_attrs.get(RERUN_OF)) is not None:  # its worker process died: run again
            tags["flowork.rerun_of"] = str(rerun_of)
        context = TrialContext(parent_run_id=s.run_id, tags=tags, reporter=report)
        t0 = time.perf_counter()
        token = TRIAL.set(context)
        try:
            ret = self.launch_job(s, trial.number, overrides, trial.params)
        finally:
            TRIAL.reset(token)
        return Ran(study, trial, ret, context, time.perf_counter() - t0)

    def launch_job(self, s: StudyPlan, number: int, overrides: list[str], params: dict[str, Any]) -> JobReturn:
        """The trial as its own job: own output dir (<sweep dir>/<model>/<trial>) with its log and overrides, own
        MLflow run, Hydra's config of the trial visible through HydraConfig.

        Not Hydra's `run_job`: it deep-copies the whole config twice and writes three YAML files per job, ~100 ms
        a trial here, most of what a fast trial costs. A study's trials share one composed config in which only the
        sampled keys change (`study_job`), and each trial's resolved config is logged to its MLflow run anyway, so
        a trial's dir keeps its log and `.hydra/overrides.yaml` (the sweep saves the study's config in
        `<model>/.hydra/`, _impl.save_study_configs)."""
        from hydra.core.hydra_config import HydraConfig
        from hydra.core.utils import _flush_loggers, configure_log, env_override

        job = self.study_job(s, overrides, params)
        hydra = HydraConfig.instance()
        if job.hydra_view is None:
            hydra.set_config(job.config)  # a masked copy of the `hydra` node (~10 ms): once per study and worker
            job.hydra_view = hydra.cfg
        hydra.cfg = job.hydra_view  # workers alternate between studies: switch views, do not copy again
        # a study's trials share their first overrides (model, fixed keys): only the sampled ones are set again, as
        # a ListConfig checks every element it is given (~0.1 ms each)
        shown = job.task_overrides
        for node in (job.config.hydra, hydra.cfg.hydra):  # interpolations resolve against the composed config
            with read_write(node), open_dict(node):
                node.job.id = f"{s.model}_{number}"
                node.job.num = number
                if len(shown) != len(overrides):
                    node.overrides.task = list(overrides)
                    continue
                for i, o in enumerate(overrides):
                    if shown[i] != o:
                        node.overrides.task[i] = o
        job.task_overrides = list(overrides)
        h = job.config.hydra
        output_dir = os.path.abspath(os.path.join(str(h.sweep.dir), str(h.sweep.subdir)))
        for node in (h, hydra.cfg.hydra):
            with read_write(node):
                node.runtime.output_dir = output_dir
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        if h.output_subdir is not None:
            meta = Path(output_dir, str(h.output_subdir))
            meta.mkdir(exist_ok=True)
            meta.joinpath("overrides.yaml").write_text("".join(f"- {o}\n" for o in redact_overrides(overrides)))
        configure_log(h.job_logging, h.verbose)
        ret = JobReturn(overrides=list(overrides), cfg=job.task, hydra_cfg=hydra.cfg, working_dir=os.getcwd())
        callbacks = self.hydra_context.callbacks
        old_cwd = os.getcwd()
        try:
            if h.job.chdir:
                os.chdir(output_dir)
                ret.working_dir = output_dir
            with env_override(OmegaConf.to_container(h.job.env_set, resolve=True)):
                callbacks.on_job_start(config=job.config, task_function=self.task_function)
                try:
                    ret.return_value = self.task_function(job.task)
                    ret.status = JobStatus.COMPLETED
                except Exception as e:
                    ret.return_value = e
                    ret.status = JobStatus.FAILED
            ret.task_name = str(h.job.name)
            _flush_loggers()
            callbacks.on_job_end(config=job.config, job_return=ret)
        finally:
            os.chdir(old_cwd)
        return ret

    def study_job(self, s: StudyPlan, overrides: list[str], params: dict[str, Any]) -> StudyJob:
        """Hydra's composition costs ~0.3 s here and a copy of a composed config ~0.15 s; a study's trials differ
        only in the sampled values, so each worker composes the study's config once and sets every sampled key
        on it before each trial (all trials of a study set the same keys). A sampled config *group*
        (features=...) changes the defaults tree, so that trial is composed in full."""
        n_fixed = len(overrides) - len(params)
        job = self.jobs.get(s.name)
        if job is None:
            composed = s.config
            if composed is None or self.relocated:
                composed = self.hydra_context.config_loader.load_sweep_config(self.config, overrides[:n_fixed])
            job = self.jobs[s.name] = StudyJob.of(composed)
        if not job.groups.isdisjoint(params):
            return StudyJob.of(self.hydra_context.config_loader.load_sweep_config(self.config, overrides))
        try:
            for cfg in (job.config, job.task):
                with read_write(cfg), open_dict(cfg):
                    for key, value in params.items():
                        OmegaConf.update(cfg, key, value, merge=False)
        except OmegaConfBaseException:  # a value of the wrong type for a typed key: run() reports it in the trial
            return StudyJob.of(self.hydra_context.config_loader.load_sweep_config(self.config, overrides), typed=False)
        return job

    def tell(self, ran: Ran) -> str:
        """Tell Optuna the trial's outcome ("complete", "failed" or "pruned"), once its run is complete."""
        import optuna
        from optuna.trial import TrialState

        study, trial, ret, context = ran.study, ran.trial, ran.ret, ran.context
        t0 = time.perf_counter()
        if context.run_id:  # a tracking process may still be applying its writes
            context.run_id = self.plan.tracker().resolve(context.run_id)
        # the trial's whole cost: its job, and any wait for its run's writes
        trial.set_user_attr("seconds", ran.seconds + time.perf_counter() - t0)
        if context.run_id:
            trial.set_user_attr("run_id", context.run_id)
        if ret.status == JobStatus.COMPLETED:
            value = ret.return_value
            if isinstance(value, int | float) and math.isfinite(value):
                if context.result is not None:
                    trial.set_user_attr("std", context.result.std)
                    trial.set_user_attr("holdout", context.result.holdout)
                study.tell(trial, float(value))
                if self.plan.charts == "all" and context.run_id:
                    self.trial_charts(study, trial, context.run_id)
                return "complete"
            error: BaseException = ValueError(f"the trial returned {value!r}, not a finite number")
        else:
            error = ret._return_value
        if isinstance(error, optuna.TrialPruned):
            study.tell(trial, state=TrialState.PRUNED)
            return "pruned"
        trial.set_user_attr("error", str(error)[:2000])
        if context.run_id is None:  # failed before its MLflow run existed: record it anyway
            record_failed_run(self.plan, context, error)
            trial.set_user_attr("run_id", self.plan.tracker().resolve(context.run_id))
        study.tell(trial, state=TrialState.FAIL)
        log.warning("trial %s of %s failed: %s", trial.number, study.study_name, str(error).splitlines()[0])
        return "failed"

    def trial_charts(self, study: Any, trial: Any, run_id: str) -> None:
        from flowork.charts.draw import run_charts

        tracker = self.plan.tracker()
        model = study.study_name.split("/", 1)[-1]
        run_charts(
            tracker,
            run_id,
            Path(self.plan.charts_dir, f"{model}_{trial.number}"),
            f"{model} trial {trial.number}",
            self.plan.unit,
        )


@dataclass
class Ran:
    """A trial whose job ran, not yet told to its study."""

    study: Any
    trial: Any
    ret: JobReturn
    context: Any  # flowork.run.TrialContext
    seconds: float  # its job's wall time


def quiet_optuna() -> None:
    """Optuna's INFO lines ("A new study created in Journal with name: ...", one per trial) would interleave with the
    progress line; flowork logs each study itself ("study S/m: n trials, space [...]")."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)


def record_failed_run(plan: SweepPlan, context: Any, error: BaseException) -> None:
    tracker = plan.tracker()
    run_id = tracker.start(f"trial {context.tags['flowork.trial']}", context.tags, context.parent_run_id)
    tracker.log_text(run_id, "".join(traceback.format_exception(error)), "traceback.txt")
    tracker.log(run_id, tags={"flowork.error": str(error)[:5000]})
    tracker.end(run_id, "FAILED")
    context.run_id = run_id
