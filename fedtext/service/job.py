"""A training job: one run's settings, its rounds so far and its extras, and who follows it.
Its fields change only under the training queue's lock (fedtext.service.jobs)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np

from fedtext.config import FederatedConfig
from fedtext.learning.records import Leak, PersonalGain, Race, RoundResult
from fedtext.service.followers import Followers, run_key

PERSONALISE_ROUNDS = 8.0  # a model for one character takes about as long as this many rounds
LEAK_ROUNDS = 2.0  # one round of one character (or the cohort) and the base model's prior


class Task(StrEnum):
    """What a job runs next: its rounds, or, once they are done, one of the extras."""

    ROUNDS = "rounds"
    BASELINE = "baseline"  # the centralised baseline, for the CPU time the rounds took
    PERSONALISE = "personalise"  # a model for one character, and every character's gain
    LEAK = "leak"  # what the server reads off one character's update (fedtext.learning.leakage)
    COMPARE = "compare"  # the lesson's algorithms, each run to the same accuracy target


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"  # all rounds ran
    STOPPED = "stopped"  # stopped by its visitor (or their page closed); the model so far is kept
    FAILED = "failed"  # diverged or the worker died; the last good model is kept


@dataclass
class Job:
    """One training run, followed by every visitor who asked for it; fields change only under
    the queue's lock."""

    job_id: str
    owner: str  # who asked for it (or for its extra) first
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
    # What the server reads off a character's update (fedtext.learning.leakage.Leak), on request.
    leaks: dict[str, Leak] = field(default_factory=dict)
    # The lesson's comparison (fedtext.learning.rounds_to_target), on request.
    races: list[Race] = field(default_factory=list)
    extra_client: str = ""  # the character a queued or running PERSONALISE or LEAK is for
    weights: list[np.ndarray] | None = None  # after the last finished round
    message: str = ""
    notices: list[str] = field(default_factory=list)  # rounds run again after a worker was lost
    submitted: float = field(default_factory=time.monotonic)
    followers: Followers = field(default_factory=Followers)  # the pages following it
    stop_requested: bool = False
    ended: float | None = None  # when the queue was done with it, its run stored
    resumable: bool = False  # failed because the TFF worker died: it can go on where it stopped

    @property
    def key(self) -> str:
        """Its identity: a request with the same key joins it (fedtext.service.followers)."""
        return run_key(self.config)

    @property
    def finished(self) -> bool:
        return self.state in (JobState.DONE, JobState.STOPPED, JobState.FAILED)

    @property
    def in_baseline(self) -> bool:
        return self.task is Task.BASELINE


def rounds_left(job: Job) -> float:
    """Rounds still to run; a baseline takes about as long as the rounds it is measured by."""
    if job.task is Task.PERSONALISE:
        return PERSONALISE_ROUNDS
    if job.task is Task.LEAK:
        return LEAK_ROUNDS
    if job.task is Task.COMPARE:
        return sum(max(0, race.max_rounds + 1 - len(race.history)) for race in job.races)
    if job.in_baseline:
        done = sum(r.cpu_seconds for r in job.baseline[1:])
        total = sum(r.cpu_seconds for r in job.history[1:]) or 1.0
        return max(0.0, (1 - done / total) * (len(job.history) - 1))
    return max(0, job.config.rounds + 1 - len(job.history))


class QueueFull(RuntimeError):
    """The visitor already has a job, or the server's queue is full."""
