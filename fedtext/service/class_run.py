"""A class run's records, plain values the page reads: its state, its students (one client
each) and the global model round by round; who trains in a round. No TensorFlow, no Streamlit."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

import numpy as np

from fedtext.config import FederatedConfig, ModelConfig
from fedtext.learning.records import ClientFigures, RoundResult
from fedtext.service.limits import ClassLimits
from fedtext.text.vocab import describe_chars, normalise

if TYPE_CHECKING:
    from fedtext.learning.roster import RosterTrainer


class ClassError(ValueError):
    """Why a class run cannot do what was asked, in one line for the page."""


class ClassState(StrEnum):
    OPEN = "open"  # students join; no round has run
    RUNNING = "running"
    PAUSED = "paused"  # by the teacher, or after the TFF worker failed: Start goes on
    DONE = "done"  # all its rounds ran
    STOPPED = "stopped"  # by the teacher; the model so far is kept
    FAILED = "failed"  # diverged; the last good model is kept

    @property
    def over(self) -> bool:
        return self in (ClassState.DONE, ClassState.STOPPED, ClassState.FAILED)


@dataclass
class Student:
    """One student, one client; fields change only under the classroom's lock."""

    student_id: str  # secret: in this student's link only
    client_id: str  # the client's name in the federation: "student-3", neither name nor text
    name: str
    character: str  # the Shakespeare client id they train on, or "" for lines of their own
    text_chars: int  # characters of training text
    first_round: int  # the first round that may include them: the next one when they joined
    own_lines: str = ""  # their pasted lines, normalised: shown on their own page only
    rounds: list[int] = field(default_factory=list)  # the rounds they trained in
    left: bool = False
    last_seen: float = field(default_factory=time.monotonic)
    # Whether their page is still connected, where the server can tell (as jobs.Job's).
    page_open: Callable[[], bool] | None = None


@dataclass
class ClassRun:
    """One class's federation: its settings, its roster, and the global model round by round."""

    class_id: str  # unguessable: the students' link
    teacher_token: str  # unguessable: in the teacher's link only
    config: FederatedConfig  # its rounds' settings; client_ids evaluate, the students train
    weights: list[np.ndarray]  # the global model, after the last finished round
    model_config: ModelConfig
    per_round: int = 0  # students trained each round: 0 for every one present, else a sample
    seconds_between_rounds: float = 0.0  # time to read the new text before the next round
    state: ClassState = ClassState.OPEN
    students: dict[str, Student] = field(default_factory=dict)  # by student id, in join order
    history: list[RoundResult] = field(default_factory=list)  # round 0 is the base model
    clients: list[ClientFigures] = field(default_factory=list)  # per student, per round
    in_flight: tuple[str, ...] = ()  # client ids of the round running now
    busy: bool = False  # the training thread is in one of its rounds (round 0 included)
    waiting: bool = False  # a round found no student present: the next join starts it
    message: str = ""
    last_active: float = field(default_factory=time.monotonic)
    # In memory only: each client's training text as ids, and the trainer reading it.
    texts: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    trainer: RosterTrainer | None = field(default=None, repr=False)
    rounds_left: object = field(default=None, repr=False)  # the trainer's rounds() iterator
    scheduled: bool = False  # a round is queued or timed to come
    texts_shown: dict[int, str] = field(default_factory=dict, repr=False)  # round -> text

    @property
    def rounds_done(self) -> int:
        return max(0, len(self.history) - 1)

    @property
    def next_round(self) -> int:
        """The first round a student joining now can be part of."""
        return self.rounds_done + 1 + bool(self.in_flight)

    def names(self) -> dict[str, str]:
        """Client id -> the student's name, for the teacher's page."""
        return {s.client_id: s.name for s in self.students.values()}

    def figures_of(self, student: Student) -> list[ClientFigures]:
        return [f for f in self.clients if f.client_id == student.client_id]


def sample_cohort(
    client_ids: Sequence[str], per_round: int, seed: int, round_num: int
) -> tuple[str, ...]:
    """All of `client_ids` (per_round 0 or at least as many), else a seeded sample in their
    order: the same roster, seed and round always give the same cohort."""
    if not per_round or per_round >= len(client_ids):
        return tuple(client_ids)
    rng = np.random.default_rng([seed, round_num])
    chosen = rng.choice(len(client_ids), per_round, replace=False)
    return tuple(client_ids[i] for i in sorted(chosen))


def check_lines(text: str, limits: ClassLimits = ClassLimits()) -> str:
    """Pasted lines, normalised, or ClassError saying what is wrong with them."""
    normalised = normalise(text or "")
    if normalised.dropped:
        unknown = describe_chars(sorted(normalised.dropped))
        raise ClassError(f"your lines have characters the model does not know: {unknown}")
    lines = normalised.text.strip()
    if len(lines) < limits.min_text_chars:
        raise ClassError(
            f"paste at least {limits.min_text_chars} characters (a few lines); "
            f"these are {len(lines)}"
        )
    if len(lines) > limits.max_text_chars:
        raise ClassError(
            f"paste at most {limits.max_text_chars:,} characters; these are {len(lines):,}"
        )
    return lines
