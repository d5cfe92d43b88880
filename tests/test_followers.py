"""Identical runs are one run: visitors who ask for the same settings follow one job of the
training queue, with real TFF rounds on the tiny model. The shared run equals the same settings
trained alone; a follower who stops leaves the others training; an extra one follower asks for
is there for all."""

from __future__ import annotations

import dataclasses
import threading
import time

import numpy as np
import pytest

from fedtext.config import FederatedConfig
from fedtext.learning.training import FederatedTrainer
from fedtext.service import backend
from fedtext.service.followers import run_key
from fedtext.service.jobs import JobState, TrainingQueue
from fedtext.service.limits import ServiceLimits
from fedtext.service.store import RunStore
from tests.conftest import wait_for

CLIENTS = ("KING_LEAR_FOOL", "KING_LEAR_KENT")


def config(**overrides) -> FederatedConfig:
    settings = dict(client_ids=CLIENTS, rounds=3, batches_per_client=2)
    return FederatedConfig(**{**settings, **overrides})


def open_page() -> bool:  # a page that stays open (Streamlit's check of its session)
    return True


@pytest.fixture
def queue(client_data, tiny_model_dir, tmp_path):
    train, test = client_data
    return TrainingQueue(
        train, test, tiny_model_dir, store=RunStore(tmp_path), limits=ServiceLimits(max_queue=1)
    )


def until(condition, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_a_run_is_its_settings_clients_and_seed():
    assert run_key(config()) == run_key(config())
    assert run_key(config(client_ids=CLIENTS[::-1])) != run_key(config())  # order of clients
    for change in (dict(seed=1), dict(rounds=4), dict(client_learning_rate=0.1)):
        assert run_key(config(**change)) != run_key(config())
    # A setting the run does not use is not part of it: pages whose folded settings differed
    # there once trained the same rounds twice.
    assert run_key(config(dp_clip=0.01, dp_clipping="fixed")) == run_key(config())
    assert run_key(config(proximal_strength=0.0)) == run_key(config())
    private = dict(noise_multiplier=1.0, weighting="uniform")
    assert run_key(config(**private, dp_clip=0.01)) == run_key(config(**private))  # adaptive
    fixed = dict(private, dp_clipping="fixed")
    assert run_key(config(**fixed, dp_clip=0.01)) != run_key(config(**fixed))
    fedprox = dict(algorithm="fedprox")
    assert run_key(config(**fedprox, proximal_strength=0.0)) != run_key(config(**fedprox))


def test_a_visitor_who_joins_mid_run_shares_rounds_and_weights_equal_to_training_alone(
    queue, client_data, tiny_model_dir
):
    first = queue.submit(config(), "ann", open_page)
    until(lambda: len(first.history) >= 2)  # round 1 landed: the second visitor comes late
    second = queue.submit(config(), "ben", open_page)
    assert second is first and first.followers.owners == ("ann", "ben")
    assert len(second.history) >= 2  # they see the rounds so far at once
    wait_for(first)
    assert first.state is JobState.DONE

    train, test = client_data
    alone = FederatedTrainer(config(), train, test, tiny_model_dir)
    solo = list(alone.rounds())
    assert [r.round_num for r in first.history] == [r.round_num for r in solo] == [0, 1, 2, 3]
    for shared, own in zip(first.history, solo, strict=True):
        assert shared.eval_loss == pytest.approx(own.eval_loss, rel=1e-5)
        if own.train_loss is not None:
            assert shared.train_loss == pytest.approx(own.train_loss, rel=1e-5)
    for a, b in zip(first.weights, alone.weights, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_stopping_one_follower_leaves_the_others_training_and_the_last_stops_it(queue):
    long = config(rounds=30, batches_per_client=1)
    job = queue.submit(long, "cat", open_page)
    for owner in ("dan", "eve"):
        assert queue.submit(long, owner, open_page) is job
    until(lambda: len(job.history) >= 2)
    assert queue.stop(job.job_id, "dan") is False  # the others still follow it
    assert job.followers.owners == ("cat", "eve") and not job.stop_requested
    rounds = len(job.history)
    until(lambda: len(job.history) > rounds)  # it goes on
    assert job.state is JobState.RUNNING
    assert queue.stop(job.job_id, "eve") is False
    assert queue.stop(job.job_id, "cat") is True  # the last one: it stops after its round
    wait_for(job)
    assert job.state is JobState.STOPPED and len(job.history) < 31


def test_a_follower_whose_page_closed_leaves_and_the_run_goes_on_for_the_rest(
    client_data, tiny_model_dir, tmp_path
):
    train, test = client_data
    # No grace for a silent page: only a page that says it is open keeps following.
    queue = TrainingQueue(train, test, tiny_model_dir, RunStore(tmp_path), heartbeat_timeout=0.0)
    closed = []
    job = queue.submit(config(seed=2), "fay", open_page)
    assert queue.submit(config(seed=2), "gus", lambda: not closed) is job
    closed.append(True)  # gus closed the tab
    wait_for(job)
    assert job.state is JobState.DONE and job.followers.owners == ("fay",)


def test_followers_take_no_queue_slot_and_a_stopped_run_is_not_joined(queue):
    running = queue.submit(config(rounds=30, batches_per_client=1), "hil", open_page)
    until(lambda: running.state is JobState.RUNNING)  # out of the queue, into the thread
    waiting = queue.submit(config(seed=3), "ian", open_page)  # the one slot (max_queue=1)
    for i in range(10):  # a class on the same settings as the queued run: all join it
        assert queue.submit(config(seed=3), f"pupil-{i}", open_page) is waiting
    queue.stop(waiting.job_id)  # no owner: stops it for everyone
    assert waiting.state is JobState.STOPPED
    again = queue.submit(config(seed=3), "jo", open_page)
    assert again is not waiting and again.followers.owners == ("jo",)
    for job in (running, again):
        queue.stop(job.job_id)
        wait_for(job)


def test_a_train_pressed_while_a_run_is_stored_joins_it_and_afresh_trains_again(queue, monkeypatch):
    # Between a run's last round and its being on disk, a page finds no stored run with its
    # settings; the queue once trained them again then.
    stored, save = threading.Event(), queue.store.save

    def slow_save(*args, **kwargs):
        assert stored.wait(60), "the test never let the run be stored"
        return save(*args, **kwargs)

    monkeypatch.setattr(queue.store, "save", slow_save)
    job = queue.submit(config(rounds=1, seed=5), "mo", open_page)
    until(lambda: job.state is JobState.DONE)  # all rounds run, the run being stored
    assert queue.store.find(job.config) is None
    assert queue.submit(config(rounds=1, seed=5), "ned", open_page) is job
    assert job.followers.owners == ("mo", "ned")
    again = queue.submit(config(rounds=1, seed=5), "oz", open_page, fresh=True)
    assert again is not job
    stored.set()
    for each in (job, again):
        wait_for(each)
    assert queue.store.find(job.config) is not None


def test_an_extra_asked_for_while_a_run_is_stored_is_stored_before_the_page_reads_it(
    queue, monkeypatch
):
    # The run's end once marked the job as stored after the extra was queued on it, so the
    # page that followed the extra read the store before the extra was in it.
    gates, save = [threading.Event(), threading.Event()], queue.store.save

    def slow_save(*args, **kwargs):
        assert gates[len(saved)].wait(60), "the test never let the run be stored"
        saved.append(save(*args, **kwargs))

    saved = []
    monkeypatch.setattr(queue.store, "save", slow_save)
    job = queue.submit(config(rounds=1, seed=6), "pia", open_page)
    until(lambda: job.state is JobState.DONE)  # its rounds run, the run being stored
    assert queue.run_baseline(job.job_id, "pia") == ""
    gates[0].set()
    until(lambda: job.state is JobState.DONE and len(job.baseline) > 1)  # being stored again
    assert len(saved) == 1 and job.ended is None
    gates[1].set()
    backend.wait_until_saved(job)
    assert queue.store.load(job.job_id).baseline == job.baseline


def test_an_extra_one_follower_asks_for_is_there_for_everyone_on_the_run(queue):
    job = queue.submit(config(rounds=1, seed=4), "kim", open_page)
    assert queue.submit(config(rounds=1, seed=4), "lou", open_page) is job
    wait_for(job)
    assert queue.run_baseline(job.job_id, "lou") == ""  # lou asks; kim follows the same run
    wait_for(job)
    assert queue.get(job.job_id) is job and len(job.baseline) > 1
    stored = queue.store.load(job.job_id)  # kim's page, reloaded, reads the run's own copy
    assert stored.baseline == job.baseline
    assert queue.run_baseline(job.job_id, "kim") == "this run has its baseline already"
    # A later request with the same settings finds the stored run with its baseline.
    assert queue.store.find(dataclasses.replace(job.config))[0] == job.job_id
