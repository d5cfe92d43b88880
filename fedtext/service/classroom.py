"""A class run: the class is the federation. A teacher opens one and hands out its link; each
student who opens it joins as one client, training on a Shakespeare character's lines or on lines
of their own, which stay in this process's memory (never on disk, never on another student's
page). The teacher starts, pauses and stops the rounds; each round runs in the training queue's
thread, one at a time, on the students present when it starts. No Streamlit here: ui/classroom.py
draws it."""

from __future__ import annotations

import dataclasses
import logging
import secrets
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from fedtext.config import ConfigError, FederatedConfig, ModelConfig
from fedtext.model.weights import base_model_dir, load_config, load_weights_arrays
from fedtext.service.class_run import (
    ClassError,
    ClassRun,
    ClassState,
    Student,
    check_lines,
    sample_cohort,
)
from fedtext.service.jobs import HEARTBEAT_TIMEOUT_S
from fedtext.service.limits import ClassLimits
from fedtext.service.store import new_run_id
from fedtext.text.plays import DataError, load_text_ids
from fedtext.text.vocab import encode

if TYPE_CHECKING:
    from fedtext.model.generation import TextGenerator
    from fedtext.service.jobs import TrainingQueue

CLASS_PARAM, TEACHER_PARAM, STUDENT_PARAM = "class", "teacher", "student"  # in the page's links
FORGET_AFTER_S = 6 * 3600.0  # an idle class run leaves memory, its students' lines with it
FORGET_ENDED_S = 3600.0  # an ended one's students may still read its last text for this long
TEXT_LENGTH = 200  # characters of the global model's text each round, the page's default


class Classroom:
    """Every class run of a server, in memory, over its training queue."""

    def __init__(
        self,
        queue: TrainingQueue,
        limits: ClassLimits = ClassLimits(),
        heartbeat_timeout: float = HEARTBEAT_TIMEOUT_S,
    ):
        self.queue, self.limits, self.heartbeat_timeout = queue, limits, heartbeat_timeout
        self.base_dir = queue.base_dir or base_model_dir()
        self._characters = set(queue.train_data.client_ids)
        self._runs: dict[str, ClassRun] = {}
        self._lock = threading.RLock()

    # ---------------------------------------------------------------- the teacher

    def open(
        self, config: FederatedConfig, per_round: int = 0, seconds_between_rounds: float = 0.0
    ) -> ClassRun:
        """A new class run with `config`'s settings (its client ids evaluate the model); each
        round also measures every student's figures. ClassError past the limits."""
        try:
            self.queue.limits.check(config)
        except ConfigError as error:
            raise ClassError(str(error)) from None
        if config.private:
            raise ClassError(
                "a class run shows each student's own figures, which differential privacy "
                "does not allow: set the noise multiplier to 0"
            )
        self._check_pace(per_round, seconds_between_rounds)
        config = dataclasses.replace(
            config, client_figures=True, rounds_per_call=1, clients_per_round=0
        )
        with self._lock:
            self._forget_idle()
            live = sum(not r.state.over for r in self._runs.values())
            if live >= self.limits.max_classes:
                raise ClassError(
                    f"this server already holds {live} class runs, its most: "
                    "try again when one has ended"
                )
            run = ClassRun(
                new_run_id(),
                secrets.token_urlsafe(16),
                config,
                load_weights_arrays(self.base_dir),
                load_config(self.base_dir),
                per_round,
                float(seconds_between_rounds),
            )
            self._runs[run.class_id] = run
            return run

    def start(self, class_id: str, token: str) -> str:
        """Start or go on after a pause: '' when it does, else why not."""
        with self._lock:
            run, why = self._as_teacher(class_id, token)
            if why:
                return why
            if run.state.over:
                return "this class run has ended: open a new one"
            run.state, run.message = ClassState.RUNNING, ""
            self._schedule(run)
            return ""

    def pause(self, class_id: str, token: str) -> str:
        """No round after the one running now, until Start."""
        with self._lock:
            run, why = self._as_teacher(class_id, token)
            if not why and run.state is ClassState.RUNNING:
                run.state = ClassState.PAUSED
            return why

    def stop(self, class_id: str, token: str) -> str:
        """The end: the round running now finishes and is kept, and no other starts."""
        with self._lock:
            run, why = self._as_teacher(class_id, token)
            if not why and not run.state.over:
                run.state = ClassState.STOPPED
                if not run.busy:  # else when the round running now has ended
                    self._close(run)
            return why

    def configure(
        self, class_id: str, token: str, per_round: int, seconds_between_rounds: float
    ) -> str:
        """Students per round (0: all present) and the pause between rounds, from the next
        round on: '' when set, else why not."""
        try:
            self._check_pace(per_round, seconds_between_rounds)
        except ClassError as error:
            return str(error)
        with self._lock:
            run, why = self._as_teacher(class_id, token)
            if not why:
                run.per_round, run.seconds_between_rounds = per_round, seconds_between_rounds
            return why

    def _check_pace(self, per_round: int, seconds_between_rounds: float) -> None:
        try:
            self.limits.check_pause(seconds_between_rounds)
        except ConfigError as error:
            raise ClassError(str(error)) from None
        if not isinstance(per_round, int) or not 0 <= per_round <= self.limits.max_students:
            raise ClassError(
                f"students per round must lie between 0 (all) and {self.limits.max_students}, "
                f"got {per_round!r}"
            )

    def get(self, class_id: str) -> ClassRun | None:
        return self._runs.get(class_id or "")

    def is_teacher(self, run: ClassRun, token: str) -> bool:
        return secrets.compare_digest(run.teacher_token.encode(), (token or "").encode())

    # ---------------------------------------------------------------- the students

    def join(
        self,
        class_id: str,
        name: str,
        character: str = "",
        own_lines: str = "",
        page_open: Callable[[], bool] | None = None,
    ) -> Student:
        """A new student of the class, training on `character`'s lines or on `own_lines`;
        ClassError (one line) when they cannot join."""
        name = " ".join((name or "").split())
        if not name:
            raise ClassError("type your name (or a nickname) first")
        if len(name) > self.limits.max_name_chars:
            raise ClassError(f"a name is at most {self.limits.max_name_chars} characters")
        if character:
            if character not in self._characters:
                raise ClassError(f"{character!r} is not one of Shakespeare's characters here")
            ids = self._character_ids(character)
            text = ""
        else:
            text = check_lines(own_lines, self.limits)
            ids = encode(text + "\n")  # a newline ends each speech in the plays' text too
        with self._lock:
            run = self.get(class_id)
            if run is None:
                raise ClassError("this class run is not open on this server (any more)")
            if run.state.over:
                raise ClassError("this class run has ended: ask your teacher for a new link")
            joined = [s for s in run.students.values() if not s.left]
            if len(joined) >= self.limits.max_students:
                raise ClassError(
                    f"this class is full ({self.limits.max_students} students): ask your teacher"
                )
            taken = {s.name for s in run.students.values()}
            shown, n = name, 2
            while shown in taken:  # two students of one name stay apart on the roster
                shown, n = f"{name} ({n})", n + 1
            student = Student(
                secrets.token_urlsafe(16),
                f"student-{len(run.students) + 1}",
                shown,
                character,
                len(ids),
                run.next_round,
                own_lines=text,
                page_open=page_open,
            )
            run.texts[student.client_id] = ids
            run.students[student.student_id] = student
            run.last_active = time.monotonic()
            self._wake(run)
            return student

    def student(self, run: ClassRun, student_id: str) -> Student | None:
        student = run.students.get(student_id or "")
        return student if student is not None and not student.left else None

    def touch(
        self, class_id: str, student_id: str, page_open: Callable[[], bool] | None = None
    ) -> None:
        """A student page's heartbeat (and, after a reload, its new connection)."""
        with self._lock:
            run = self.get(class_id)
            student = run and self.student(run, student_id)
            if student:
                student.last_seen = run.last_active = time.monotonic()
                student.page_open = page_open or student.page_open
                self._wake(run)

    def leave(self, class_id: str, student_id: str) -> None:
        """The student leaves: a round running now finishes with them, the next is without."""
        with self._lock:
            run = self.get(class_id)
            student = run and self.student(run, student_id)
            if student:
                student.left, student.own_lines = True, ""
                if student.client_id not in run.in_flight:  # else once that round is done
                    run.texts.pop(student.client_id, None)  # their lines leave memory now

    def present(self, run: ClassRun) -> list[Student]:
        """The students who would train if a round started now."""
        with self._lock:
            return [s for s in run.students.values() if self._is_present(s)]

    # ---------------------------------------------------------------- the global model's text

    def text(self, run: ClassRun, prompt: str, seed: int = 0) -> str:
        """The global model's text after its latest round (`prompt`, TEXT_LENGTH characters):
        made once per round, however many students read it."""
        with self._lock:
            round_num, weights = run.rounds_done, run.weights
            known = run.texts_shown.get(round_num)
        if known is None:
            known = _generator(weights, run.model_config).generate(prompt, TEXT_LENGTH, 1.0, seed)
            with self._lock:
                run.texts_shown = {round_num: known}  # older rounds' texts are not asked again
        return known

    # ---------------------------------------------------------------- the rounds

    def _schedule(self, run: ClassRun, after: float = 0.0) -> None:
        """The run's next round, in the training thread (after `after` seconds). Locked."""
        if run.scheduled:
            return
        run.scheduled, run.waiting = True, False
        if after > 0:
            timer = threading.Timer(after, self.queue.call_soon, args=(lambda: self._round(run),))
            timer.daemon = True
            timer.start()
        else:
            self.queue.call_soon(lambda: self._round(run))

    def _wake(self, run: ClassRun) -> None:
        """A round that waited for a student goes now. Locked."""
        if run.waiting and run.state is ClassState.RUNNING:
            self._schedule(run)

    def _round(self, run: ClassRun) -> None:
        """One round of the class run (round 0, the base model, first), in the training thread."""
        # Imported here, not at the top: the page imports this module before TensorFlow loads.
        from fedtext.distribution.runtime import WorkerError
        from fedtext.learning.roster import RosterTrainer
        from fedtext.learning.training import TrainingDiverged

        with self._lock:
            run.scheduled = False
            if run.state is not ClassState.RUNNING:
                return
            round_num = len(run.history)
            run.busy = True
            if round_num:
                present = [s.client_id for s in run.students.values() if self._is_present(s)]
                if not present:
                    run.waiting, run.busy = True, False
                    return
                cohort = sample_cohort(present, run.per_round, run.config.seed, round_num)
                run.in_flight = cohort
        state, message = None, ""
        try:
            if run.trainer is None:
                run.trainer = RosterTrainer(
                    run.config, self.queue.train_data, self.queue.test_data, self.base_dir
                )
                run.trainer.texts = run.texts  # the same dict: a join is seen by the next round
            if run.rounds_left is None:
                run.rounds_left = run.trainer.rounds()
            if round_num:
                run.trainer.cohorts[round_num] = cohort
            next(run.rounds_left)
        except WorkerError as error:  # a new worker goes on from the last finished round
            state, message = ClassState.PAUSED, f"{error}: press Start to go on"
            run.rounds_left = None
        except TrainingDiverged as error:
            state, message = ClassState.FAILED, str(error)
        except Exception as error:  # a class run must never take the queue's thread down
            state, message = ClassState.FAILED, f"training failed: {type(error).__name__}: {error}"
            logging.getLogger(__name__).exception("class run %s failed", run.class_id)
        with self._lock:
            trainer = run.trainer
            if trainer is not None and len(trainer.history) > len(run.history):
                run.history = list(trainer.history)
                run.clients = list(trainer.client_history)
                run.weights = trainer.weights
                for student in run.students.values():
                    if student.client_id in run.in_flight:
                        student.rounds.append(round_num)
            for student in run.students.values():
                if student.left:  # who left during the round: their lines leave memory now
                    run.texts.pop(student.client_id, None)
            run.in_flight, run.busy = (), False
            if state is not None:
                run.state, run.message = state, message
            elif run.rounds_done >= run.config.rounds:
                run.state = ClassState.DONE
            if run.state.over:
                self._close(run)
            elif run.state is ClassState.RUNNING:
                self._schedule(run, run.seconds_between_rounds if round_num else 0.0)

    def _close(self, run: ClassRun) -> None:
        """An ended run keeps its model and figures; its trainer and round iterator go. Locked."""
        if run.state is ClassState.STOPPED and not run.message:
            run.message = f"stopped by the teacher after round {run.rounds_done}"
        if run.rounds_left is not None:
            run.rounds_left.close()
        run.rounds_left, run.trainer = None, None

    # ---------------------------------------------------------------- helpers, locked

    def _as_teacher(self, class_id: str, token: str) -> tuple[ClassRun | None, str]:
        run = self.get(class_id)
        if run is None:
            return None, "this class run is not open on this server (any more)"
        if not self.is_teacher(run, token):
            return None, "only the teacher's link can do that"
        run.last_active = time.monotonic()
        return run, ""

    def _character_ids(self, character: str) -> np.ndarray:
        database = getattr(self.queue.train_data, "fedtext_database", None)
        try:
            return load_text_ids([character], path=database)[character]
        except (OSError, DataError) as error:
            raise ClassError(f"{character}'s lines cannot be read: {error}") from None

    def _is_present(self, student: Student) -> bool:
        """Not left, and their page connected (where the server can tell) or recently heard."""
        if student.left:
            return False
        if student.page_open is not None:
            return student.page_open()
        return time.monotonic() - student.last_seen <= self.heartbeat_timeout

    def _forget_idle(self) -> None:
        """Runs idle for long leave memory, a live one stopped first."""
        now = time.monotonic()
        for class_id, run in list(self._runs.items()):
            idle = now - run.last_active
            if run.busy or idle < (FORGET_ENDED_S if run.state.over else FORGET_AFTER_S):
                continue
            if not run.state.over:
                run.state, run.message = ClassState.STOPPED, "stopped: nobody was there"
            self._close(run)
            del self._runs[class_id]


def _generator(weights: list[np.ndarray], model_config: ModelConfig) -> TextGenerator:
    from fedtext.model.generation import TextGenerator  # NumPy only; the engine has it loaded

    return TextGenerator(weights, model_config)
