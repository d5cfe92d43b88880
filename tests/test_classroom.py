"""A class run, the class as the federation: students join as clients (a character's lines or
their own), rounds run in the training queue's thread on whoever is present, with real TFF rounds
on the tiny model."""

from __future__ import annotations

import os
import secrets
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from fedtext.config import FederatedConfig
from fedtext.learning import training
from fedtext.service.class_run import ClassError, ClassState
from fedtext.service.classroom import Classroom
from fedtext.service.jobs import TrainingQueue
from fedtext.service.limits import ClassLimits, ServiceLimits
from fedtext.service.store import RunStore

EVALUATE_ON = ("KING_LEAR_FOOL",)  # held-out speeches the global model is measured on
CHARACTER = "KING_LEAR_KENT"
OWN_LINES = (
    "The quiet river keeps its counsel under the bridge of stone,\n"
    "and every lantern on the quay remembers someone gone home.\n"
    "We sing of bread and of the morning, of the ferry and the gull.\n"
)


def class_config(**overrides) -> FederatedConfig:
    settings = dict(client_ids=EVALUATE_ON, rounds=3, batches_per_client=1, batch_size=4)
    return FederatedConfig(**{**settings, **overrides})


@pytest.fixture
def classroom(client_data, tiny_model_dir, tmp_path):
    train, test = client_data
    queue = TrainingQueue(
        train, test, tiny_model_dir, store=RunStore(tmp_path), limits=ServiceLimits(max_rounds=10)
    )
    # Students here send no heartbeat: they count as present for the hour (a loaded machine
    # compiles the first round for minutes); page_open stands for a closed tab where needed.
    return Classroom(queue, ClassLimits(max_students=4, max_classes=2), heartbeat_timeout=3600)


def wait_until(condition, timeout: float = 300, what: str = "the class run") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not get there in {timeout} s"
        time.sleep(0.05)


def ended(run) -> bool:
    return run.state.over and not run.busy


class HookedProcess:
    """The real learning process; `hooks[n]` runs in the training thread while round n is in
    flight in TFF (its clients' datasets already built), before the round's call returns."""

    def __init__(self, process, hooks):
        self._process, self.hooks, self.calls = process, hooks, 0
        self.__wrapped__ = process  # what the communication meter reads

    def __getattr__(self, name):
        return getattr(self._process, name)

    def next(self, state, data):
        self.calls += 1
        hook = self.hooks.get(self.calls)
        if hook is not None:
            # Beside the call, as a page's click would come: the round is in flight meanwhile.
            thread = threading.Thread(target=hook)
            thread.start()
            output = self._process.next(state, data)
            thread.join()
            return output
        return self._process.next(state, data)


def hook_rounds(monkeypatch, hooks) -> None:
    real = training.build_process
    monkeypatch.setattr(training, "build_process", lambda *args: HookedProcess(real(*args), hooks))


def test_students_join_as_clients_and_each_gets_their_own_figures(classroom):
    run = classroom.open(class_config(client_learning_rate=1.0))  # moves the tiny model's text
    assert run.state is ClassState.OPEN and len(run.class_id) >= 20
    kent = classroom.join(run.class_id, "Ada", character=CHARACTER)
    own = classroom.join(run.class_id, "Ben", own_lines=OWN_LINES)
    assert (kent.client_id, own.client_id) == ("student-1", "student-2")
    assert kent.first_round == own.first_round == 1
    base = [w.copy() for w in run.weights]
    before = classroom.text(run, "ROMEO: ")

    assert classroom.start(run.class_id, "not the token") == "only the teacher's link can do that"
    assert classroom.start(run.class_id, run.teacher_token) == ""
    wait_until(lambda: ended(run))
    assert run.state is ClassState.DONE, run.message
    assert [r.round_num for r in run.history] == [0, 1, 2, 3]
    for result in run.history[1:]:
        assert result.client_ids == ("student-1", "student-2")
    for student in (kent, own):
        figures = run.figures_of(student)
        assert [f.round_num for f in figures] == [1, 2, 3]
        assert all(0 < f.share < 1 and f.update_norm > 0 for f in figures)
        assert student.rounds == [1, 2, 3]
    # Weighted by text: the character's 40 sequences outweigh the pasted lines' few.
    kent_share, own_share = (run.figures_of(s)[0].share for s in (kent, own))
    assert kent_share + own_share == pytest.approx(1.0, abs=1e-5)
    assert kent_share > own_share
    assert any(not np.array_equal(a, b) for a, b in zip(base, run.weights, strict=True))
    after = classroom.text(run, "ROMEO: ")
    assert after.startswith("ROMEO: ") and after == classroom.text(run, "ROMEO: ")
    assert before != after  # the same prompt and seed, another model
    assert classroom.start(run.class_id, run.teacher_token).startswith("this class run has ended")


def test_late_joiner_enters_at_the_next_round_and_a_leaver_after_the_round_in_flight(
    classroom, monkeypatch
):
    run = classroom.open(class_config(rounds=4))
    first = classroom.join(run.class_id, "Ada", character=CHARACTER)
    second = classroom.join(run.class_id, "Ben", own_lines=OWN_LINES)
    late = {}

    def during_round_2():
        # Round 2 is in flight: Ada leaves and Cy joins.
        assert run.in_flight == ("student-1", "student-2")
        classroom.leave(run.class_id, first.student_id)
        late["cy"] = classroom.join(run.class_id, "Cy", own_lines=OWN_LINES.upper())

    hook_rounds(monkeypatch, {2: during_round_2})
    classroom.start(run.class_id, run.teacher_token)
    wait_until(lambda: ended(run))
    assert run.state is ClassState.DONE, run.message
    cohorts = [r.client_ids for r in run.history[1:]]
    assert cohorts == [
        ("student-1", "student-2"),
        ("student-1", "student-2"),  # the round in flight finished with Ada
        ("student-2", "student-3"),  # then without her, and with Cy
        ("student-2", "student-3"),
    ]
    cy = late["cy"]
    assert cy.first_round == 3 and cy.rounds == [3, 4]
    assert first.rounds == [1, 2] and second.rounds == [1, 2, 3, 4]
    assert [f.round_num for f in run.figures_of(first)] == [1, 2]  # what she trained is kept
    assert "student-1" not in run.texts  # her lines left memory with her
    assert classroom.student(run, first.student_id) is None


def test_a_round_waits_for_a_student_and_pause_holds_the_next_round(classroom, monkeypatch):
    run = classroom.open(class_config(rounds=2))
    closed = threading.Event()
    student = classroom.join(
        run.class_id, "Ada", character=CHARACTER, page_open=lambda: not closed.is_set()
    )
    closed.set()  # her tab closed before the first round: nobody is there
    pause = lambda: classroom.pause(run.class_id, run.teacher_token)  # noqa: E731
    hook_rounds(monkeypatch, {1: pause})
    classroom.start(run.class_id, run.teacher_token)
    wait_until(lambda: run.waiting, what="the first round's wait")
    assert run.rounds_done == 0 and classroom.present(run) == []
    # Her page is back (a reload): the heartbeat brings its connection, and the round goes.
    classroom.touch(run.class_id, student.student_id, page_open=lambda: True)
    wait_until(lambda: run.rounds_done == 1 and not run.busy)
    time.sleep(1.0)  # paused during round 1: no round 2
    assert run.rounds_done == 1 and run.state is ClassState.PAUSED and not run.scheduled
    assert classroom.start(run.class_id, run.teacher_token) == ""
    wait_until(lambda: ended(run))
    assert run.state is ClassState.DONE and student.rounds == [1, 2]


def test_stop_keeps_the_rounds_trained(classroom, monkeypatch):
    run = classroom.open(class_config(rounds=5))
    classroom.join(run.class_id, "Ada", character=CHARACTER)
    stop = lambda: classroom.stop(run.class_id, run.teacher_token)  # noqa: E731
    hook_rounds(monkeypatch, {2: stop})
    classroom.start(run.class_id, run.teacher_token)
    wait_until(lambda: ended(run))
    assert run.state is ClassState.STOPPED
    assert [r.round_num for r in run.history] == [0, 1, 2]  # round 2, in flight, is kept
    assert run.message == "stopped by the teacher after round 2"
    assert run.trainer is None  # its trainer (and TFF state) left memory


def files_containing(roots, needle: bytes) -> list[Path]:
    found = []
    for root in roots:
        for path in Path(root).rglob("*"):
            if path.is_file() and needle in path.read_bytes():
                found.append(path)
    return found


def test_pasted_lines_are_never_written_to_disk(classroom, tmp_path, monkeypatch):
    data_root = tmp_path / "data"
    monkeypatch.setenv("FEDTEXT_DATA", str(data_root))
    marker = f"Quixotic {secrets.token_hex(8)} zephyrs"
    lines = f"{marker} blow over the harbour wall,\n" + OWN_LINES
    run = classroom.open(class_config(rounds=2))
    own = classroom.join(run.class_id, "Ada", own_lines=lines)
    other = classroom.join(run.class_id, "Ben", character=CHARACTER)
    classroom.start(run.class_id, run.teacher_token)
    wait_until(lambda: ended(run))
    assert run.state is ClassState.DONE and own.rounds == [1, 2]
    # Kept in memory for this run only: on her own record, not on another's or in the figures.
    assert marker in own.own_lines and marker not in other.own_lines
    assert marker not in repr(run.clients) + repr(run.history) + repr(run.names())

    roots = [os.environ["FEDTEXT_CACHE"], tmp_path]
    needle = marker.encode()
    control = tmp_path / "control.txt"  # the search finds the lines where they were written
    control.write_text(lines)
    assert files_containing(roots, needle) == [control]
    control.unlink()
    assert files_containing(roots, needle) == []

    classroom.leave(run.class_id, own.student_id)
    assert own.own_lines == "" and own.client_id not in run.texts


def test_limits_say_what_is_wrong_in_one_line(classroom):
    run = classroom.open(class_config())
    messages = []

    def refused(call, match):
        with pytest.raises(ClassError, match=match) as caught:
            call()
        messages.append(str(caught.value))

    join = classroom.join
    refused(lambda: join(run.class_id, "  ", character=CHARACTER), "type your name")
    refused(lambda: join(run.class_id, "A" * 31, character=CHARACTER), "at most 30 characters")
    refused(lambda: join(run.class_id, "Ada", character="HAMLET_YORICK"), "not one of")
    refused(lambda: join(run.class_id, "Ada", own_lines="Too short."), "at least 101")
    refused(lambda: join(run.class_id, "Ada", own_lines="word " * 4000), "at most 16,000")
    refused(
        lambda: join(run.class_id, "Ada", own_lines=OWN_LINES + "\u2603 and \u03c8"),
        "characters the model does not know: '\u03c8', '\u2603'",
    )
    refused(lambda: join("no-such-class", "Ada", character=CHARACTER), "not open")
    for name in ("Ada", "Ada", "Ben", "Cy"):
        join(run.class_id, name, character=CHARACTER)
    assert [s.name for s in run.students.values()] == ["Ada", "Ada (2)", "Ben", "Cy"]
    refused(lambda: join(run.class_id, "Dee", character=CHARACTER), "this class is full")
    refused(lambda: classroom.open(class_config(rounds=11)), "rounds is limited to 10")
    refused(
        lambda: classroom.open(class_config(noise_multiplier=1.0, weighting="uniform")),
        "differential privacy",
    )
    refused(lambda: classroom.open(class_config(), seconds_between_rounds=-1), "between 0")
    classroom.open(class_config())
    refused(lambda: classroom.open(class_config()), "already holds 2 class runs")
    classroom.stop(run.class_id, run.teacher_token)
    refused(lambda: join(run.class_id, "Eve", character=CHARACTER), "has ended")
    assert all("\n" not in m and len(m) < 120 for m in messages), messages


def test_class_rounds_take_turns_with_a_visitors_run(classroom):
    job = classroom.queue.submit(
        FederatedConfig(client_ids=(CHARACTER,), rounds=10, batches_per_client=1), owner="vi"
    )
    alive = lambda: classroom.queue.touch(job.job_id)  # noqa: E731  (the visitor's heartbeat)
    wait_until(lambda: alive() or len(job.history) >= 2, what="the visitor's first round")
    run = classroom.open(class_config(rounds=2))
    classroom.join(run.class_id, "Ada", character=CHARACTER)
    classroom.start(run.class_id, run.teacher_token)
    wait_until(lambda: alive() or ended(run) or job.finished)
    # One class round (round 0 included) between two of the visitor's, not after all 10.
    assert run.state is ClassState.DONE and not job.finished, (run.state, len(job.history))
    assert len(job.history) <= 9  # rounds 0-8 at most: the class's 3 calls came between
    classroom.queue.stop(job.job_id)
    wait_until(lambda: job.finished)
