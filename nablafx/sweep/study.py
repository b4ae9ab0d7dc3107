"""The Optuna study that coordinates a sweep's workers.

Storage: a journal file (default, ``<out>/<sweep>/study.journal``: embedded, no server) or
any SQLAlchemy URL (``postgresql://user@host/db`` for many machines) through RDBStorage.
The study stores the planned sweep (points, config texts) as a user attribute, so a
worker elsewhere needs only the storage URL and the study name.

A :class:`~optuna.samplers.GridSampler` over the point indices hands out fresh points.
Optuna alone would train a point twice: the GridSampler re-offers points that are still
running once the grid is used up, two workers may draw the same point at once, and a
killed worker leaves its trial RUNNING forever. So every trial first *claims* its point:
it records ``point``, ``host``, ``pid`` and a ``heartbeat`` on itself, then reads the study,
and gives the point up (the trial ends PRUNED, ``outcome: duplicate``) if another live
trial holds it or it is already finished. Because each worker writes its claim before it
reads, two simultaneous claimants cannot both miss each other (at worst both give up and
the point is offered again). A RUNNING trial whose worker is gone -- same host and dead
pid, or no heartbeat for ``STALE_SECONDS`` -- is ended FAIL (``outcome: interrupted``) and
its point offered again (re-enqueued: the GridSampler counts failed trials as visited),
so the next worker resumes it from ``last.ckpt``.

Trial user attributes: ``point``, ``run_id``, ``host``, ``pid``, ``pid_start``, ``heartbeat``
(Unix time), ``outcome`` (finished | failed | interrupted | duplicate), ``error``.
"""

from __future__ import annotations

import time
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from nablafx.errors import ConfigError
from nablafx.sweep.runs import alive, host
from nablafx.sweep.spec import Sweep

HEARTBEAT_SECONDS = 10.0
STALE_SECONDS = 90.0
SPEC_ATTR = "sweep"

optuna.logging.set_verbosity(optuna.logging.WARNING)


def open_storage(url: str):
    """A journal file path (or ``journal:PATH``), or an RDB URL such as ``postgresql://...``."""
    if url.startswith("journal:"):
        url = url[len("journal:"):]
    if "://" not in url:
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        return JournalStorage(JournalFileBackend(url))
    if url.startswith("postgresql"):
        try:
            import psycopg2  # noqa: F401
        except ImportError as error:
            raise ConfigError(
                f"--storage {url.split('@')[-1]}: PostgreSQL storage needs psycopg2; "
                f"pip install -c constraints.txt 'nablafx[postgres]'"
            ) from error
        if url.startswith("postgresql://"):  # SQLAlchemy 2.1 would pick psycopg (3); the extra installs psycopg2
            url = "postgresql+psycopg2://" + url[len("postgresql://"):]
    try:
        return optuna.storages.RDBStorage(url, engine_kwargs={"pool_pre_ping": True})
    except Exception as error:  # SQLAlchemy / driver errors (no server, bad credentials)
        raise ConfigError(f"--storage: cannot open the study database ({type(error).__name__}: "
                          f"{str(error).splitlines()[0]})") from error


def grid_sampler(sweep: Sweep) -> optuna.samplers.GridSampler:
    # The same seed in every worker: the first len(grid) trials take the grid in order.
    return optuna.samplers.GridSampler({"point": list(range(len(sweep.points)))}, seed=0)


def create_study(sweep: Sweep, storage_url: str) -> optuna.Study:
    """Create the study (or open it if it exists and plans the same grid)."""
    storage = open_storage(storage_url)
    study = optuna.create_study(
        storage=storage, study_name=sweep.name, direction="minimize", sampler=grid_sampler(sweep),
        load_if_exists=True,
    )
    stored = study.user_attrs.get(SPEC_ATTR)
    if stored is None:
        study.set_user_attr(SPEC_ATTR, sweep.to_dict())
    else:
        before = [p["id"] for p in stored["points"]]
        now = [p.id for p in sweep.points]
        if before != now or stored.get("objective") != sweep.objective:
            raise ConfigError(
                f"{sweep.path}: the study {sweep.name!r} in {storage_url} was created for another grid "
                f"({len(before)} runs, objective {stored.get('objective')}; now {len(now)} runs, objective "
                f"{sweep.objective}): the sweep file or a config it names changed. Give the sweep a new `name`, "
                f"or remove the old study (its sweep folder) to start over"
            )
    return study


def load_study(study_name: str, storage_url: str) -> tuple[optuna.Study, Sweep]:
    """Open an existing study and the sweep stored in it (for ``nablafx sweep worker``)."""
    storage = open_storage(storage_url)
    try:
        plain = optuna.load_study(study_name=study_name, storage=storage)
    except KeyError as error:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
        raise ConfigError(
            f"--study {study_name}: no such study in {storage_url.split('@')[-1]} (studies: {', '.join(names) or 'none'}); "
            f"create it with `nablafx sweep run SWEEP.yaml --storage URL` first"
        ) from error
    data = plain.user_attrs.get(SPEC_ATTR)
    if data is None:
        raise ConfigError(f"--study {study_name}: this study was not created by `nablafx sweep run` (no sweep plan)")
    sweep = Sweep.from_dict(data)
    return optuna.load_study(study_name=study_name, storage=storage, sampler=grid_sampler(sweep)), sweep


def tell(study: optuna.Study, trial, values=None, state: TrialState | None = None) -> None:
    """``study.tell`` outside ``optimize``: the GridSampler calls ``study.stop()`` once the grid is
    used up, which raises there (optuna issue 4121) -- after the trial's state is stored."""
    try:
        study.tell(trial, values, state=state, skip_if_finished=True)
    except RuntimeError as error:
        if "Study.stop" not in str(error):
            raise


# --- point states ---------------------------------------------------------------------------------------


def is_stale(trial: FrozenTrial, now: float | None = None) -> bool:
    """A RUNNING trial whose worker is gone."""
    if trial.state != TrialState.RUNNING:
        return False
    now = time.time() if now is None else now
    attrs = trial.user_attrs
    if attrs.get("host") == host() and attrs.get("pid") and not alive(attrs["pid"], attrs.get("pid_start")):
        return True
    beat = attrs.get("heartbeat")
    if beat is None:
        started = trial.datetime_start.timestamp() if trial.datetime_start else now
        return now - started > STALE_SECONDS
    return now - float(beat) > STALE_SECONDS


def end_stale_trials(study: optuna.Study, trials: list[FrozenTrial]) -> int:
    """End every RUNNING trial whose worker is gone as FAIL (outcome interrupted)."""
    ended = 0
    for trial in trials:
        if is_stale(trial):
            optuna.trial.Trial(study, trial._trial_id).set_user_attr("outcome", "interrupted")
            tell(study, trial.number, state=TrialState.FAIL)
            ended += 1
    return ended


def point_of(trial: FrozenTrial) -> int | None:
    point = trial.user_attrs.get("point", trial.params.get("point"))
    return None if point is None else int(point)


def point_states(sweep: Sweep, trials: list[FrozenTrial], exclude_trial: int | None = None) -> dict[int, str]:
    """``finished`` | ``running`` | ``failed`` (no retries left) | ``todo`` for every point."""
    finished, running, failures = set(), set(), {}
    for trial in trials:
        point = point_of(trial)
        if point is None or trial.number == exclude_trial:
            continue
        if trial.state == TrialState.COMPLETE:
            finished.add(point)
        elif trial.state == TrialState.RUNNING and "point" in trial.user_attrs and not is_stale(trial):
            running.add(point)
        elif trial.state == TrialState.FAIL and trial.user_attrs.get("outcome") == "failed":
            failures[point] = failures.get(point, 0) + 1
    states = {}
    for point in range(len(sweep.points)):
        if point in finished:
            states[point] = "finished"
        elif point in running:
            states[point] = "running"
        elif failures.get(point, 0) > sweep.max_retries:
            states[point] = "failed"
        else:
            states[point] = "todo"
    return states


def failures_of(trials: list[FrozenTrial], point: int) -> int:
    return sum(1 for t in trials if point_of(t) == point and t.state == TrialState.FAIL
               and t.user_attrs.get("outcome") == "failed")


def offer(study: optuna.Study, sweep: Sweep, trials: list[FrozenTrial], todo: list[int], force: bool = False) -> None:
    """Make sure the next ``ask`` can reach a todo point: the GridSampler offers only points no
    trial has visited, so one whose trials all failed or were interrupted is enqueued (``force``:
    enqueue even if a point looks unvisited, after asks kept landing on taken points)."""
    visited = {point_of(t) for t in trials if "grid_id" in t.system_attrs}
    if not force and any(point not in visited for point in todo):
        return  # the GridSampler will hand out an unvisited one
    waiting = {int(t.system_attrs.get("fixed_params", {}).get("point", -1))
               for t in trials if t.state == TrialState.WAITING}
    for point in todo:
        if point not in waiting:
            study.enqueue_trial({"point": point})
            return


def claim(study: optuna.Study, sweep: Sweep, identity: dict[str, Any]) -> tuple[optuna.Trial, int] | tuple[None, str]:
    """Ask a trial and claim its point; ``(trial, point)``, or ``(None, why)`` if it gave it up."""
    trial = study.ask()
    point = int(trial.suggest_categorical("point", list(range(len(sweep.points)))))
    for key, value in {"point": point, "run_id": sweep.points[point].id, **identity,
                       "heartbeat": time.time()}.items():
        trial.set_user_attr(key, value)
    trials = study.get_trials(deepcopy=False)
    rivals = [t.number for t in trials if t.number != trial.number and t.state == TrialState.RUNNING
              and t.user_attrs.get("point") == point and not is_stale(t)]
    state = point_states(sweep, trials, exclude_trial=trial.number)[point]
    if rivals or state in ("finished", "failed"):
        trial.set_user_attr("outcome", "duplicate")
        tell(study, trial, state=TrialState.PRUNED)
        why = f"trial {rivals[0]} holds it" if rivals else f"it is {state}"
        return None, f"point {point} ({sweep.points[point].id}): {why}"
    return trial, point
