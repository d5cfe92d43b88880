"""The extras a finished run's visitor may ask for, run by the training queue's threads after
the run's rounds: the centralised baseline, a model for one character with every character's
gain, what the server reads off one character's update, and the lesson's comparison of
algorithms. Whatever one follower asks for attaches to the run, so everyone on it sees it."""

from __future__ import annotations

import dataclasses
import logging
import time

from fedtext.learning.records import PersonalGain, Race
from fedtext.model.weights import base_model_dir, load_config
from fedtext.service.job import Job, JobState, Task

log = logging.getLogger(__name__)

# TFF's personalization evaluation covers at most this many of a run's characters (the chosen
# one first), with fewer local steps than the chosen character's own model.
GAIN_CLIENTS = 8
GAIN_STEPS = 20
# A comparison's contenders run at most this many rounds each (or the run's, if fewer): the
# paper's four at 20 rounds take about 5 minutes of a quiet 2-core machine.
MAX_RACE_ROUNDS = 20


# The extras made for one character: the Job field that holds them, and how a repeat is refused.
FOR_ONE_CLIENT = {
    Task.PERSONALISE: ("personal", "a model for {}"),
    Task.LEAK: ("leaks", "{}'s update read"),
}


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
        return self._queue_for_client(job_id, owner, client_id, stored, Task.PERSONALISE)

    def read_update(self, job_id: str, owner: str, client_id: str, stored=None) -> str:
        """Queue what the server reads off one of a finished run's characters' updates; ''
        when queued, else why not."""
        return self._queue_for_client(job_id, owner, client_id, stored, Task.LEAK)

    def _queue_for_client(self, job_id: str, owner: str, client_id: str, stored, task) -> str:
        """Queue an extra for one of a finished run's characters, unless the run has it."""
        with self._lock:
            job, why = self._finished_run(job_id, owner, stored)
            field, done = FOR_ONE_CLIENT[task]
            if job is not None and client_id not in job.config.client_ids:
                why = f"{client_id} did not train this model"
            elif job is not None and client_id in getattr(job, field):
                why = f"this run has {done.format(client_id)} already"
            if why:
                return why
            job.extra_client = client_id
            return self._queue_extra(job, owner, task)

    def compare_algorithms(self, job_id: str, owner: str, stored=None) -> str:
        """Queue the lesson's comparison of algorithms for a finished run; '' when queued,
        else why not."""
        with self._lock:
            job, why = self._finished_run(job_id, owner, stored)
            if job is not None and job.races and all(race.finished for race in job.races):
                why = "this run has its comparison already"
            elif job is not None and job.config.attack_client:
                why = "the comparison is for runs without an attacker"
            return why or self._queue_extra(job, owner, Task.COMPARE)

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
                races=list(stored.races),
                leaks=dict(stored.leaks),
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
        run = {
            Task.BASELINE: self._run_baseline,
            Task.PERSONALISE: self._run_personalise,
            Task.LEAK: self._run_leak,
            Task.COMPARE: self._run_comparison,
        }[job.task]
        message = run(job)
        with self._lock:
            job.state, job.task, job.extra_client = JobState.DONE, Task.ROUNDS, ""
            job.message = message or job.message
        self._store(job, load_config(self.base_dir or base_model_dir()))
        self._mark_ended(job)

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
        client_id, message = job.extra_client, ""
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

    def _run_leak(self, job: Job) -> str:
        """One round of the chosen character's update from the base model, as the run's
        aggregator hands it to the server, and what the server reads off it."""
        # Deferred: a page imports this module before TensorFlow loads.
        from fedtext.learning.leakage import probe

        client_id = job.extra_client
        secure = job.config.aggregator == "secure"
        # What the server receives: the attacker's lines are the attack's, not a leak's subject,
        # and differential privacy's noise goes on the sum after the updates arrive.
        config = dataclasses.replace(
            job.config,
            attack_client="",
            attack_trigger="",
            attack_target="",
            attack_boost=1.0,
            noise_multiplier=0.0,
        )
        cohort = job.config.client_ids if secure else ()
        try:
            leak = probe(config, self.train_data, self.test_data, client_id, self.base_dir, cohort)
        except Exception as error:  # the run itself is fine: only this reading is missing
            log.exception("run %s: reading %s's update failed", job.job_id, client_id)
            return f"reading {client_id}'s update failed: {type(error).__name__}: {error}"
        with self._lock:
            job.leaks = {**job.leaks, client_id: leak}
        return ""

    def _run_comparison(self, job: Job) -> str:
        """The lesson's contenders, each until the shared target or its most rounds; a
        contender that is the run itself takes the run's own rounds."""
        # Deferred: a page imports this module before TensorFlow loads.
        from fedtext.learning.rounds_to_target import lesson_contenders, lesson_target, race

        history = job.history
        target = lesson_target(
            history[0].eval_accuracy, max(r.eval_accuracy for r in history if r.eval_accuracy >= 0)
        )
        most = min(job.config.rounds, MAX_RACE_ROUNDS)
        data = (self.train_data, self.test_data)
        contenders = lesson_contenders(job.config)
        with self._lock:
            job.races = [Race(c.label, target, most, (), c.reference) for c in contenders]
        for i, contender in enumerate(contenders):
            ran = dataclasses.replace(
                contender.config, rounds=job.config.rounds, rounds_per_call=1
            ) == dataclasses.replace(job.config, rounds_per_call=1)
            try:
                if ran and job.config.eval_every == 1 and len(history) > most:
                    whole = Race(
                        contender.label, target, most, history[: most + 1], contender.reference
                    )
                    races = [
                        dataclasses.replace(whole, history=history[: (whole.rounds or most) + 1])
                    ]
                else:
                    races = race(contender, data, self.base_dir, target, most)
                for so_far in races:
                    with self._lock:
                        job.races = [*job.races[:i], so_far, *job.races[i + 1 :]]
                        if job.stop_requested or self._abandoned(job):
                            return "comparison stopped early"
            except Exception as error:  # the run itself is fine: only the comparison is cut
                log.exception("run %s: the comparison failed", job.job_id)
                return f"the comparison failed: {type(error).__name__}: {error}"
        return ""
