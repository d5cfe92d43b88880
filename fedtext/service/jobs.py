"""A training queue for the shared page service: jobs run in background threads while pages
poll them, one at a time per TFF worker group (one group on a small machine;
fedtext.distribution.runtime). Identical requests are one job that every visitor who asked
follows (fedtext.service.followers)."""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fedtext.config import FederatedConfig
from fedtext.distribution import runtime
from fedtext.service.allocator import release_free_memory
from fedtext.service.extras import GAIN_CLIENTS, GAIN_STEPS, Extras
from fedtext.service.followers import Followers, run_key
from fedtext.service.job import Job, JobState, QueueFull, Task, rounds_left
from fedtext.service.limits import ServiceLimits
from fedtext.service.store import RunExtras, RunStore, new_run_id

if TYPE_CHECKING:
    from fedtext.learning.training import FederatedTrainer

log = logging.getLogger(__name__)  # to the page service's log: its process's stderr

FORGET_AFTER_S = 600.0  # a finished job leaves memory after this; its saved copy stays on disk
HEARTBEAT_TIMEOUT_S = 30.0  # a page polls every second or so; silence this long means it closed
DEFAULT_ROUND_S = 10.0  # guess for the first estimate, before any round was timed
# Where they were before the job and its extras had modules of their own.
__all__ = ["GAIN_CLIENTS", "GAIN_STEPS", "Job", "JobState", "QueueFull", "Task", "TrainingQueue"]


class TrainingQueue(Extras):
    """Runs submitted jobs in order, `parallel` at a time; pages poll them and call `touch`."""

    def __init__(
        self,
        train_data,
        test_data,
        base_dir: Path | None = None,
        store: RunStore | None = None,
        limits: ServiceLimits = ServiceLimits(),
        heartbeat_timeout: float = HEARTBEAT_TIMEOUT_S,
        parallel: int | None = None,
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
        # Runs with different settings train at once, one per TFF worker group, each group's
        # context set in its own thread; one group (and thread) on a 2-core machine.
        self.parallelism = runtime.parallelism(parallel)
        self._threads = [
            threading.Thread(
                target=self._serve, args=(group,), name=f"fedtext-training-{group}", daemon=True
            )
            for group in range(self.parallelism.runs)
        ]
        for thread in self._threads:
            thread.start()

    def submit(
        self,
        config: FederatedConfig,
        owner: str,
        page_open: Callable[[], bool] | None = None,
        fresh: bool = False,
    ) -> Job:
        """Queue a run, or join the job with the same settings that is queued, running or
        (unless `fresh`) trained and being stored, which takes no queue slot; ConfigError past
        the server's limits, QueueFull if the visitor has one or the queue is full."""
        self.limits.check(config)
        with self._lock:
            shared = self._same_run(config, fresh)
            mine = [
                j
                for j in self._jobs.values()
                if owner in j.followers and not j.finished and j is not shared
            ]
            if len(mine) >= self.limits.max_jobs_per_visitor:
                raise QueueFull("you already have a training run queued or running")
            if shared is not None:
                shared.followers.add(owner, page_open)
                return shared
            if len(self._waiting) >= self.limits.max_queue:
                raise QueueFull(f"the server's queue is full ({len(self._waiting)} waiting)")
            self._forget_old_jobs()
            job = Job(new_run_id(), owner, config, followers=Followers(owner, page_open))
            self._jobs[job.job_id] = job
            self._waiting.append(job.job_id)
            self._lock.notify_all()
            return job

    def _same_run(self, config: FederatedConfig, fresh: bool = False) -> Job | None:
        """The job that trains exactly `config`: queued or running, or (unless `fresh`) with
        all its rounds run and being stored. A Train pressed then finds no stored run yet: it
        joins the trained job rather than train the same rounds again. Under the lock."""
        key = run_key(config)
        for job in self._jobs.values():
            live = not job.finished and job.task is Task.ROUNDS and not job.stop_requested
            complete = len(job.history) == job.config.rounds + 1
            trained = not fresh and complete and job.ended is None
            if (live or trained) and job.key == key:
                return job
        return None

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
                log.exception("a call in the training thread failed")

    def get(self, job_id: str, owner: str | None = None) -> Job | None:
        """The job, only for one who follows it when an owner is given."""
        job = self._jobs.get(job_id)
        return job if job is not None and (owner is None or owner in job.followers) else None

    def touch(
        self, job_id: str, owner: str = "", page_open: Callable[[], bool] | None = None
    ) -> None:
        """A page's heartbeat for the job it follows (any page showing a live run follows it);
        with no owner, every follower's."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is not None and owner:
                job.followers.touch(owner, page_open)
            elif job is not None:
                job.followers.touch_all()

    def stop(self, job_id: str, owner: str | None = None) -> bool:
        """`owner` stops following; the job stops once nobody follows it (with no owner: at
        once). Queued: leaves the queue. Running: stops after the current round, keeping the
        model. Returns whether the job stops (False: it goes on for its other followers)."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or job.finished:
                return False
            if owner is not None:
                job.followers.remove(owner)
                if len(job.followers):
                    return False
            job.stop_requested = True
            if job.state is JobState.QUEUED:
                self._waiting.remove(job_id)
                job.state, job.message = JobState.STOPPED, "cancelled before it started"
                job.ended = time.monotonic()
            return True

    def position(self, job_id: str) -> int:
        """0 while running, n while n jobs run or wait ahead of it (`parallel` of them run at
        once)."""
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
            # Those ahead share `parallel` worker groups; then its own rounds.
            rounds = sum(rounds_left(j) for j in ahead) / self.parallelism.runs + rounds_left(job)
        return rounds * self.seconds_per_round()

    def resume(self, job_id: str) -> bool:
        """Queue a job whose worker died again; it goes on from its last finished round."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or not job.resumable or job_id not in self._trainers:
                return False
            job.state, job.message, job.stop_requested = JobState.QUEUED, "", False
            job.resumable, job.ended = False, None
            job.followers.touch_all()
            self._waiting.append(job_id)
            self._lock.notify_all()
            return True

    def _serve(self, group: int) -> None:
        # This thread's computations go to its own worker group.
        runtime.use_group(group, self.parallelism.runs)
        while True:
            self._run_calls()
            with self._lock:
                while not self._waiting and not self._calls:
                    self._lock.wait()
                if not self._waiting:
                    continue
                job = self._jobs[self._waiting.popleft()]
                if self._abandoned(job):  # its pages closed while it waited
                    job.state, job.message = JobState.STOPPED, "the pages that queued it closed"
                    job.ended = time.monotonic()
                    continue
                job.state = JobState.RUNNING
            if job.task is Task.ROUNDS:
                self._run(job)
            else:
                self._run_extra(job)
            # A run's transient copies of the model (gRPC messages, NumPy and TensorFlow
            # buffers) are free now but stay resident in glibc's arenas until handed back.
            release_free_memory()

    def _run(self, job: Job) -> None:
        # Imported here, not at the top: a page imports this module before TensorFlow loads.
        from fedtext.distribution.runtime import WorkerError
        from fedtext.learning.attacks import AttackTrainer
        from fedtext.learning.failures import RoundFailed
        from fedtext.learning.training import FederatedTrainer, TrainingDiverged

        trainer = self._trainers.get(job.job_id)
        state, message, resumable = JobState.DONE, "", False
        try:
            if trainer is None:
                kind = AttackTrainer if job.config.attack_client else FederatedTrainer
                trainer = kind(job.config, self.train_data, self.test_data, self.base_dir)
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
            log.exception("run %s failed", job.job_id)  # with the cause's traceback, if any
            said = f"training failed: {type(error).__name__}: {error}"
            if isinstance(error, RoundFailed):  # names the round and the cause already
                said = str(error)
            state, message = JobState.FAILED, f"{said} (traceback in the server log)"
        with self._lock:
            job.state, job.message, job.resumable = state, message, resumable
            if not resumable:
                self._trainers.pop(job.job_id, None)
        if trainer is not None:
            self._store(job, trainer.model_config)
        self._mark_ended(job)
        if trainer is not None:  # aside, so the next run need not wait for it (BUILD_LOCK)
            threading.Thread(
                target=self._write_keras, args=(job, trainer.model_config), daemon=True
            ).start()

    def _write_keras(self, job: Job, model_config) -> None:
        """The stored run's model in Keras' format, in this thread, which has TensorFlow (the
        page's has none); the store keeps it when the run is stored again."""
        from fedtext.model.keras_model import save_keras_file  # TensorFlow: this thread only

        directory = self.store.path(job.job_id) if self.store is not None else None
        if directory is None or not directory.exists() or job.weights is None:
            return
        try:
            save_keras_file(job.weights, model_config, directory)
        except Exception:  # the run is kept in fedtext's own files all the same
            log.exception("run %s: model.keras not written", job.job_id)

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
                RunExtras(job.baseline, job.clients, job.personal, job.gains, job.races, job.leaks),
            )
        except Exception as error:  # neither a full disk nor a defect may end the queue's thread
            said = str(error)
            if not isinstance(error, OSError):  # a defect: its traceback is wanted
                log.exception("run %s not stored", job.job_id)
                said = f"{type(error).__name__}: {error} (traceback in the server log)"
            with self._lock:
                job.message = f"{job.message}; not kept on disk: {said}".lstrip("; ")

    def _mark_ended(self, job: Job) -> None:
        """The queue is done with the job, its run stored: unless a visitor queued an extra on
        it while it was being stored, which marks the job when the extra is stored."""
        with self._lock:
            if job.finished:
                job.ended = time.monotonic()

    def _forget_old_jobs(self) -> None:
        """Drop finished jobs (and their weights) from memory once their page has had them."""
        now = time.monotonic()
        for job_id, job in list(self._jobs.items()):
            if job.ended is not None and now - job.ended > FORGET_AFTER_S:
                del self._jobs[job_id]
                self._trainers.pop(job_id, None)

    def _abandoned(self, job: Job) -> bool:
        """Whether every page following the job has gone; called under the lock, as it marks
        the job."""
        job.followers.prune(self.heartbeat_timeout)
        if len(job.followers):
            return False
        job.stop_requested = True
        return True
