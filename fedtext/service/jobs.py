"""A training queue for a shared server: TFF's execution context is process-wide and the
machine small, so jobs run one at a time in a background thread while pages poll them."""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fedtext.config import FederatedConfig, ServerLimits
from fedtext.learning.records import PersonalGain, RoundResult
from fedtext.model.weights import base_model_dir, load_config
from fedtext.service.allocator import release_free_memory
from fedtext.service.store import RunStore, new_run_id

if TYPE_CHECKING:
    from fedtext.learning.training import FederatedTrainer

FORGET_AFTER_S = 600.0  # a finished job leaves memory after this; its saved copy stays on disk
HEARTBEAT_TIMEOUT_S = 30.0  # a page polls every second or so; silence this long means it closed
DEFAULT_ROUND_S = 10.0  # guess for the first estimate, before any round was timed
PERSONALISE_ROUNDS = 8.0  # a model for one character takes about as long as this many rounds
# TFF's personalization evaluation covers at most this many of a run's characters (the chosen
# one first), with fewer local steps than the chosen character's own model.
GAIN_CLIENTS = 8
GAIN_STEPS = 20


class Task(StrEnum):
    """What a job runs next: its rounds, or, once they are done, one of the extras."""

    ROUNDS = "rounds"
    BASELINE = "baseline"  # the centralised baseline, for the CPU time the rounds took
    PERSONALISE = "personalise"  # a model for one character, and every character's gain


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"  # all rounds ran
    STOPPED = "stopped"  # stopped by its visitor (or their page closed); the model so far is kept
    FAILED = "failed"  # diverged or the worker died; the last good model is kept


@dataclass
class Job:
    """One visitor's training run; fields change only under the queue's lock."""

    job_id: str
    owner: str
    config: FederatedConfig
    state: JobState = JobState.QUEUED
    history: list[RoundResult] = field(default_factory=list)
    task: Task = Task.ROUNDS
    # The centralised baseline, trained on request after the rounds for the CPU time they took.
    baseline: list[RoundResult] = field(default_factory=list)
    clients: list = field(default_factory=list)  # runs.ClientFigures, where the run measures them
    # Models per character, made on request after the rounds: their figures and weights, and
    # every character's gain from TFF's personalization evaluation.
    personal: dict[str, PersonalGain] = field(default_factory=dict)
    personal_weights: dict[str, list[np.ndarray]] = field(default_factory=dict)
    gains: list[PersonalGain] = field(default_factory=list)
    personal_client: str = ""  # the character a queued or running PERSONALISE job is for
    weights: list[np.ndarray] | None = None  # after the last finished round
    message: str = ""
    notices: list[str] = field(default_factory=list)  # rounds run again after a worker was lost
    submitted: float = field(default_factory=time.monotonic)
    last_seen: float = field(default_factory=time.monotonic)
    stop_requested: bool = False
    ended: float | None = None  # when the queue was done with it, its run stored
    resumable: bool = False  # failed because the TFF worker died: it can go on where it stopped
    # Whether the page that submitted it is still connected, where the server can tell: a
    # browser throttles a hidden tab's polling, and that must not look like a closed page.
    page_open: Callable[[], bool] | None = None

    @property
    def finished(self) -> bool:
        return self.state in (JobState.DONE, JobState.STOPPED, JobState.FAILED)

    @property
    def in_baseline(self) -> bool:
        return self.task is Task.BASELINE


def _rounds_left(job: Job) -> float:
    """Rounds still to run; a baseline takes about as long as the rounds it is measured by."""
    if job.task is Task.PERSONALISE:
        return PERSONALISE_ROUNDS
    if job.in_baseline:
        done = sum(r.cpu_seconds for r in job.baseline[1:])
        total = sum(r.cpu_seconds for r in job.history[1:]) or 1.0
        return max(0.0, (1 - done / total) * (len(job.history) - 1))
    return max(0, job.config.rounds + 1 - len(job.history))


class QueueFull(RuntimeError):
    """The visitor already has a job, or the server's queue is full."""


class TrainingQueue:
    """Runs submitted jobs one after another; pages poll `status` and call `touch`."""

    def __init__(
        self,
        train_data,
        test_data,
        base_dir: Path | None = None,
        store: RunStore | None = None,
        limits: ServerLimits = ServerLimits(),
        heartbeat_timeout: float = HEARTBEAT_TIMEOUT_S,
    ):
        self.train_data, self.test_data, self.base_dir = train_data, test_data, base_dir
        self.store = store
        self.limits = limits
        self.heartbeat_timeout = heartbeat_timeout
        self._jobs: dict[str, Job] = {}
        self._waiting: collections.deque[str] = collections.deque()
        self._trainers: dict[str, FederatedTrainer] = {}  # kept while a failed job may resume
        self._round_seconds: collections.deque[float] = collections.deque(maxlen=20)
        # Work for the training thread between rounds: a class run's rounds (call_soon).
        self._calls: collections.deque[Callable[[], None]] = collections.deque()
        self._lock = threading.Condition()
        self._thread = threading.Thread(target=self._serve, name="fedtext-training", daemon=True)
        self._thread.start()

    def submit(
        self, config: FederatedConfig, owner: str, page_open: Callable[[], bool] | None = None
    ) -> Job:
        """Queue a run; ConfigError past the server's limits, QueueFull if the visitor has one."""
        self.limits.check(config)
        with self._lock:
            mine = [j for j in self._jobs.values() if j.owner == owner and not j.finished]
            if len(mine) >= self.limits.max_jobs_per_visitor:
                raise QueueFull("you already have a training run queued or running")
            if len(self._waiting) >= self.limits.max_queue:
                raise QueueFull(f"the server's queue is full ({len(self._waiting)} waiting)")
            self._forget_old_jobs()
            job = Job(new_run_id(), owner, config, page_open=page_open)
            self._jobs[job.job_id] = job
            self._waiting.append(job.job_id)
            self._lock.notify_all()
            return job

    def call_soon(self, work: Callable[[], None]) -> None:
        """Run `work` in the training thread before the next job or round: a class run's
        rounds (fedtext.service.classroom) go between visitors' rounds, one at a time."""
        with self._lock:
            self._calls.append(work)
            self._lock.notify_all()

    def _run_calls(self) -> None:
        """The calls waiting now (not those they queue: a class run's next round waits for the
        next turn), in the training thread; one that fails must not stop the queue."""
        with self._lock:
            waiting = len(self._calls)
        for _ in range(waiting):
            with self._lock:
                work = self._calls.popleft()
            try:
                work()
            except Exception:
                logging.getLogger(__name__).exception("a call in the training thread failed")

    def get(self, job_id: str, owner: str | None = None) -> Job | None:
        """The job, only for its owner when an owner is given."""
        job = self._jobs.get(job_id)
        return job if job is not None and (owner is None or job.owner == owner) else None

    def touch(self, job_id: str) -> None:
        """A page's heartbeat for its job."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is not None:
                job.last_seen = time.monotonic()

    def stop(self, job_id: str) -> None:
        """Queued: leaves the queue. Running: stops after the current round, keeping the model."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or job.finished:
                return
            job.stop_requested = True
            if job.state is JobState.QUEUED:
                self._waiting.remove(job_id)
                job.state, job.message = JobState.STOPPED, "cancelled before it started"
                job.ended = time.monotonic()

    def position(self, job_id: str) -> int:
        """0 while running, n while n jobs run or wait ahead of it."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or job.state is not JobState.QUEUED:
                return 0
            running = sum(j.state is JobState.RUNNING for j in self._jobs.values())
            return running + list(self._waiting).index(job_id)

    def seconds_per_round(self) -> float:
        return float(np.median(self._round_seconds)) if self._round_seconds else DEFAULT_ROUND_S

    def eta_seconds(self, job_id: str) -> float:
        """Estimated seconds until the job has finished."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or job.finished:
                return 0.0
            ahead = [j for j in self._jobs.values() if j.state is JobState.RUNNING and j is not job]
            if job.state is JobState.QUEUED:
                ahead += [self._jobs[i] for i in self._waiting if i != job_id][
                    : self.position(job_id)
                ]
            rounds = sum(_rounds_left(j) for j in (*ahead, job))
        return rounds * self.seconds_per_round()

    def resume(self, job_id: str) -> bool:
        """Queue a job whose worker died again; it goes on from its last finished round."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or not job.resumable or job_id not in self._trainers:
                return False
            job.state, job.message, job.stop_requested = JobState.QUEUED, "", False
            job.resumable, job.ended = False, None
            job.last_seen = time.monotonic()
            self._waiting.append(job_id)
            self._lock.notify_all()
            return True

    def run_baseline(self, job_id: str, owner: str, stored=None) -> str:
        """Queue the centralised baseline of a finished run (in memory, or `stored` on disk);
        '' when queued, else why not."""
        with self._lock:
            job, why = self._finished_run(job_id, owner, stored)
            if job is not None and job.baseline:
                why = "this run has its baseline already"
            return why or self._queue_extra(job, owner, Task.BASELINE)

    def personalise(self, job_id: str, owner: str, client_id: str, stored=None) -> str:
        """Queue a model for one of a finished run's characters, and every character's gain;
        '' when queued, else why not."""
        with self._lock:
            job, why = self._finished_run(job_id, owner, stored)
            if job is not None and client_id not in job.config.client_ids:
                why = f"{client_id} did not train this model"
            elif job is not None and client_id in job.personal:
                why = f"this run has a model for {client_id} already"
            if why:
                return why
            job.personal_client = client_id
            return self._queue_extra(job, owner, Task.PERSONALISE)

    def _finished_run(self, job_id: str, owner: str, stored) -> tuple[Job | None, str]:
        """A finished run, from memory or from its stored copy; else None and why. Under the
        lock."""
        job = self._jobs.get(job_id)
        if job is None and stored is not None:
            job = Job(
                job_id,
                owner,
                stored.config,
                JobState.DONE,
                history=list(stored.history),
                baseline=list(stored.baseline),
                clients=list(stored.clients),
                personal=dict(stored.personal),
                gains=list(stored.gains),
                weights=stored.weights,
                message=stored.message,
                ended=time.monotonic(),
            )
            self._jobs[job_id] = job
        if job is None or not job.finished or len(job.history) < 2:
            return None, "the run is still training, or finished no round"
        return job, ""

    def _queue_extra(self, job: Job, owner: str, task: Task) -> str:
        """Queue a finished run again for `task`. Under the lock."""
        if len(self._waiting) >= self.limits.max_queue:
            return f"the server's queue is full ({len(self._waiting)} waiting)"
        job.state, job.task, job.stop_requested = JobState.QUEUED, task, False
        job.ended, job.last_seen, job.owner = None, time.monotonic(), owner
        self._waiting.append(job.job_id)
        self._lock.notify_all()
        return ""

    def _serve(self) -> None:
        while True:
            self._run_calls()
            with self._lock:
                while not self._waiting and not self._calls:
                    self._lock.wait()
                if not self._waiting:
                    continue
                job = self._jobs[self._waiting.popleft()]
                if self._abandoned(job):  # its page closed while it waited
                    job.state, job.message = JobState.STOPPED, "the page that queued it closed"
                    job.ended = time.monotonic()
                    continue
                job.state = JobState.RUNNING
            if job.task is Task.BASELINE:
                self._run_baseline(job)
            elif job.task is Task.PERSONALISE:
                self._run_personalise(job)
            else:
                self._run(job)
            # A run's transient copies of the model (gRPC messages, NumPy and TensorFlow
            # buffers) are free now but stay resident in glibc's arenas until handed back.
            release_free_memory()

    def _run(self, job: Job) -> None:
        # Imported here, not at the top: a page imports this module before TensorFlow loads.
        from fedtext.distribution.runtime import WorkerError
        from fedtext.learning.training import FederatedTrainer, TrainingDiverged

        trainer = self._trainers.get(job.job_id)
        state, message, resumable = JobState.DONE, "", False
        try:
            if trainer is None:
                trainer = FederatedTrainer(
                    job.config, self.train_data, self.test_data, self.base_dir
                )
                self._trainers[job.job_id] = trainer
            for result in trainer.rounds():
                with self._lock:
                    job.history = list(trainer.history)
                    job.clients = list(trainer.client_history)
                    job.notices = list(trainer.notices)
                    job.weights = trainer.weights
                    if result.round_num:
                        self._round_seconds.append(result.seconds)
                    if job.stop_requested or self._abandoned(job):
                        state, message = JobState.STOPPED, f"stopped after round {result.round_num}"
                        break
                self._run_calls()  # a class run's round between two of this job's
        except WorkerError as error:
            state, message, resumable = JobState.FAILED, str(error), True
        except TrainingDiverged as error:  # the same round would diverge again: no resume
            state, message = JobState.FAILED, str(error)
        except Exception as error:  # a job must never take the queue thread down
            state, message = JobState.FAILED, f"training failed: {type(error).__name__}: {error}"
        with self._lock:
            job.state, job.message, job.resumable = state, message, resumable
            if not resumable:
                self._trainers.pop(job.job_id, None)
        if trainer is not None:
            self._store(job, trainer.model_config)
        with self._lock:
            job.ended = time.monotonic()

    def _store(self, job: Job, model_config) -> None:
        if self.store is None or len(job.history) < 2:
            return
        try:
            self.store.save(
                job.job_id,
                job.config,
                job.history,
                job.weights,
                model_config,
                job.message,
                job.baseline,
                job.clients,
                job.personal,
                job.gains,
            )
        except OSError as error:  # a full or read-only disk must not stop the queue
            with self._lock:
                job.message = f"{job.message}; not kept on disk: {error}".lstrip("; ")

    def _run_baseline(self, job: Job) -> None:
        from fedtext.learning.centralised import CentralisedTrainer

        budget = sum(r.cpu_seconds for r in job.history[1:])
        message = ""
        try:
            trainer = CentralisedTrainer(job.config, self.train_data, self.test_data, self.base_dir)
            for _ in trainer.checkpoints(budget):
                with self._lock:
                    job.baseline = list(trainer.history)
                    if job.stop_requested or self._abandoned(job):
                        message = "baseline stopped early"
                        break
        except Exception as error:  # the run itself is fine: only its baseline is missing
            message = f"baseline failed: {type(error).__name__}: {error}"
        with self._lock:
            job.state, job.task = JobState.DONE, Task.ROUNDS
            job.message = message or job.message
        self._store(job, load_config(self.base_dir or base_model_dir()))
        with self._lock:
            job.ended = time.monotonic()

    def _run_personalise(self, job: Job) -> None:
        import dataclasses

        from fedtext.learning.personalisation import (
            PersonaliseConfig,
            evaluate_personalisation,
            fine_tune,
        )

        model_config = load_config(self.base_dir or base_model_dir())
        settings = PersonaliseConfig(seed=job.config.seed)
        client_id, message = job.personal_client, ""
        try:
            mine = fine_tune(
                job.weights, model_config, client_id, self.train_data, self.test_data, settings
            )
            figures = PersonalGain(
                client_id,
                mine.global_loss,
                mine.global_accuracy,
                mine.personal_loss,
                mine.personal_accuracy,
                mine.steps,
            )
            gains = job.gains
            if not gains:
                others = [cid for cid in job.config.client_ids if cid != client_id]
                measured = [client_id, *others][:GAIN_CLIENTS]
                steps = dataclasses.replace(settings, steps=GAIN_STEPS)
                gains = evaluate_personalisation(
                    job.weights, model_config, measured, self.train_data, self.test_data, steps
                )
            with self._lock:
                job.personal = {**job.personal, client_id: figures}
                job.personal_weights = {**job.personal_weights, client_id: mine.weights}
                job.gains = gains
        except Exception as error:  # the run itself is fine: only this model is missing
            message = f"the model for {client_id} failed: {type(error).__name__}: {error}"
        with self._lock:
            job.state, job.task, job.personal_client = JobState.DONE, Task.ROUNDS, ""
            job.message = message or job.message
        if not message and self.store is not None:
            try:
                self.store.save_personal(job.job_id, client_id, mine.weights, model_config)
            except (OSError, KeyError) as error:
                with self._lock:
                    job.message = f"the model for {client_id} is not kept on disk: {error}"
        self._store(job, model_config)
        with self._lock:
            job.ended = time.monotonic()

    def _forget_old_jobs(self) -> None:
        """Drop finished jobs (and their weights) from memory once their page has had them."""
        now = time.monotonic()
        for job_id, job in list(self._jobs.items()):
            if job.ended is not None and now - job.ended > FORGET_AFTER_S:
                del self._jobs[job_id]
                self._trainers.pop(job_id, None)

    def _abandoned(self, job: Job) -> bool:
        """Whether the job's page has gone; called under the lock, as it marks the job."""
        if job.page_open is not None and job.page_open():
            job.last_seen = time.monotonic()
            return False
        if time.monotonic() - job.last_seen > self.heartbeat_timeout:
            job.stop_requested = True
            return True
        return False
