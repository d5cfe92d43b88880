"""The extras a finished run's visitor may ask for, run by the training queue's threads after
the run's rounds: the centralised baseline, and a model for one character with every character's
gain. Whatever one follower asks for attaches to the run, so everyone on it sees it."""

from __future__ import annotations

import dataclasses
import logging
import time

from fedtext.learning.records import PersonalGain
from fedtext.model.weights import base_model_dir, load_config
from fedtext.service.job import Job, JobState, Task

# TFF's personalization evaluation covers at most this many of a run's characters (the chosen
# one first), with fewer local steps than the chosen character's own model.
log = logging.getLogger(__name__)

GAIN_CLIENTS = 8
GAIN_STEPS = 20


class Extras:
    """The training queue's runners of extras (a mixin of `TrainingQueue`, whose lock, data,
    store and `_store`/`_abandoned` they use)."""

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
        job.ended, job.owner = None, owner
        # It attaches to the run: whoever shows the run later sees it; the others on the run
        # follow it again once their page polls.
        job.followers.reset(owner)
        self._waiting.append(job.job_id)
        self._lock.notify_all()
        return ""

    def _run_extra(self, job: Job) -> None:
        """The extra a finished run's visitor asked for; then the run is done again."""
        run = self._run_baseline if job.task is Task.BASELINE else self._run_personalise
        message = run(job)
        with self._lock:
            job.state, job.task, job.personal_client = JobState.DONE, Task.ROUNDS, ""
            job.message = message or job.message
        self._store(job, load_config(self.base_dir or base_model_dir()))
        with self._lock:
            job.ended = time.monotonic()

    def _run_baseline(self, job: Job) -> str:
        """The centralised baseline for the CPU time the rounds took; '' or what went wrong."""
        # Deferred: a page imports this module before TensorFlow loads.
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
            log.exception("run %s: the baseline failed", job.job_id)
            message = f"baseline failed: {type(error).__name__}: {error}"
        return message

    def _run_personalise(self, job: Job) -> str:
        """A model for one character, and every character's gain; '' or what went wrong."""
        # Deferred: a page imports this module before TensorFlow loads.
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
            log.exception("run %s: the model for %s failed", job.job_id, client_id)
            message = f"the model for {client_id} failed: {type(error).__name__}: {error}"
        if not message and self.store is not None:
            try:
                self.store.save_personal(job.job_id, client_id, mine.weights, model_config)
            except (OSError, KeyError) as error:
                message = f"the model for {client_id} is not kept on disk: {error}"
        return message
