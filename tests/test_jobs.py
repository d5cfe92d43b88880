"""The shared training queue and the run store, with real TFF rounds on a small model."""

import os
import time

import pytest

from fedtext.config import ConfigError, FederatedConfig
from fedtext.learning.records import RoundResult
from fedtext.service.jobs import JobState, QueueFull, TrainingQueue
from fedtext.service.limits import ServiceLimits
from fedtext.service.store import RunStore, is_run_id
from tests.conftest import wait_for

HEARTBEAT_S = 3.0  # a closed page is noticed this long after its last poll
ROUNDS_PAST_HEARTBEAT = 1000


def config(**overrides) -> FederatedConfig:
    settings = dict(client_ids=("KING_LEAR_FOOL",), rounds=2, batches_per_client=1)
    settings.update(overrides)
    return FederatedConfig(**settings)


@pytest.fixture
def queue(client_data, tiny_model_dir, tmp_path):
    train, test = client_data
    return TrainingQueue(
        train,
        test,
        tiny_model_dir,
        store=RunStore(tmp_path),
        limits=ServiceLimits(max_rounds=5, max_queue=3),
    )


def test_jobs_run_one_at_a_time_in_order_and_are_stored(queue, monkeypatch):
    # Open pages: the first run's start (tracing, the worker) can outlast the 30 s a silent
    # page is given on a loaded machine.
    first = queue.submit(config(), owner="alice", page_open=lambda: True)
    second = queue.submit(config(seed=1), owner="bob", page_open=lambda: True)
    assert is_run_id(first.job_id) and first.job_id != second.job_id
    assert queue.position(second.job_id) >= 1
    assert queue.eta_seconds(second.job_id) > 0
    assert queue.get(first.job_id, owner="bob") is None  # a visitor sees only their own jobs
    for job in (first, second):
        queue.touch(job.job_id, job.owner)
    wait_for(first)
    wait_for(second)
    assert first.state is second.state is JobState.DONE
    assert first.ended < second.ended  # in the order submitted
    assert [r.round_num for r in first.history] == [0, 1, 2]
    saved = queue.store.load(first.job_id)
    assert [r.round_num for r in saved.history] == [0, 1, 2]
    assert saved.config == first.config

    # Finished jobs leave memory (a long-lived server) but stay on disk.
    monkeypatch.setattr("fedtext.service.jobs.FORGET_AFTER_S", 0.0)
    third = queue.submit(config(seed=2), owner="alice")
    assert queue.get(first.job_id) is None and queue.get(third.job_id) is third
    assert queue.store.load(first.job_id).history == saved.history
    queue.stop(third.job_id)


def test_limits_and_one_job_per_visitor(queue):
    with pytest.raises(ConfigError, match="rounds is limited to 5"):
        queue.submit(config(rounds=6), owner="carol")
    job = queue.submit(config(), owner="carol")
    assert queue.submit(config(), owner="carol") is job  # the same run: still one
    with pytest.raises(QueueFull, match="already have a training run"):
        queue.submit(config(seed=1), owner="carol")
    queue.stop(job.job_id)
    wait_for(job)
    assert job.state is JobState.STOPPED


def test_a_page_that_stops_polling_stops_its_job_after_a_round(
    client_data, tiny_model_dir, tmp_path
):
    """The heartbeat: while the page polls, the run trains; once it stops polling (the page
    closed), the run stops at the end of a round after the timeout, keeping what it trained."""
    train, test = client_data
    # Rounds enough to outlast the heartbeat: a tiny round takes about 70 ms here, so 50 rounds
    # (the page's limit) would have ended about 0.3 s after it ran out, and once ended before.
    queue = TrainingQueue(
        train,
        test,
        tiny_model_dir,
        store=RunStore(tmp_path),
        heartbeat_timeout=HEARTBEAT_S,
        limits=ServiceLimits(max_rounds=ROUNDS_PAST_HEARTBEAT),
    )
    job = queue.submit(config(rounds=ROUNDS_PAST_HEARTBEAT), owner="dave")
    deadline = time.monotonic() + 300
    while len(job.history) < 3 and time.monotonic() < deadline:  # the page polls: two rounds
        closed = time.monotonic()  # the last poll: none after the loop
        queue.touch(job.job_id)
        time.sleep(0.2)
    assert job.state is JobState.RUNNING and len(job.history) >= 3
    wait_for(job, timeout=300)
    assert job.state is JobState.STOPPED and job.message.startswith("stopped after round")
    assert 3 <= len(job.history) < ROUNDS_PAST_HEARTBEAT + 1
    assert job.ended - closed >= HEARTBEAT_S  # not before the heartbeat ran out
    assert queue.store.load(job.job_id).history == job.history  # what it trained is kept


def test_run_store_prunes_by_size_and_rejects_odd_ids(tmp_path, tiny_model_dir):
    from fedtext.model.keras_model import load_model

    store = RunStore(tmp_path)
    model, model_config = load_model(tiny_model_dir)
    with pytest.raises(KeyError):
        store.load("../../etc/passwd")
    ids = []
    for seed in range(3):
        run_id = f"run-{seed}-abcdefghijklmnopqrstu"
        store.save(run_id, config(seed=seed), [], model.get_weights(), model_config)
        ids.append(run_id)
        time.sleep(0.01)
    assert store.prune(max_total_mb=0.0) == ids
    with pytest.raises(KeyError):
        store.load(ids[0])


def test_a_stored_run_serves_only_runs_from_its_own_base_model(tmp_path, tiny_model_dir):
    from fedtext.model.weights import load_config, load_weights_arrays, save_arrays

    weights, model_config = load_weights_arrays(tiny_model_dir), load_config(tiny_model_dir)
    retrained = tmp_path / "retrained-base"
    save_arrays([w + 0.5 for w in weights], model_config, retrained)
    done = config(rounds=1)
    history = [RoundResult(0, 2.0, 0.3), RoundResult(1, 1.9, 0.31)]
    RunStore(tmp_path, tiny_model_dir).save(
        "run-0-abcdefghijklmnopqrstu", done, history, weights, model_config
    )
    assert RunStore(tmp_path, tiny_model_dir).find(done)[0] == "run-0-abcdefghijklmnopqrstu"
    assert RunStore(tmp_path, retrained).find(done) is None  # another base: train afresh
    assert RunStore(tmp_path).find(done) is None


def test_run_store_prunes_runs_past_their_age_and_keeps_the_rest(tmp_path, tiny_model_dir):
    from fedtext.model.keras_model import load_model

    store = RunStore(tmp_path)
    model, model_config = load_model(tiny_model_dir)
    ids = [f"run-{n}-abcdefghijklmnopqrstu" for n in range(3)]
    for n, run_id in enumerate(ids):
        store.save(run_id, config(seed=n), [], model.get_weights(), model_config)
    eight_days_ago = time.time() - 8 * 86400
    os.utime(store.path(ids[1]), (eight_days_ago, eight_days_ago))
    assert store.prune(max_age_days=7, max_total_mb=1e6) == [ids[1]]  # far under the size
    with pytest.raises(KeyError):
        store.load(ids[1])
    assert store.prune(max_age_days=7, max_total_mb=1e6) == []  # a day old or less: kept
    assert [store.load(i).config.seed for i in (ids[0], ids[2])] == [0, 2]


@pytest.mark.parametrize(
    "error, said",
    [
        (OSError(28, "No space left on device"), "No space left"),
        # A defect in storing once ended the queue's thread: every later Train waited forever.
        (TypeError("Object of type Leak is not JSON serializable"), "TypeError: Object of type"),
    ],
)
def test_a_run_that_cannot_be_stored_ends_with_the_reason_and_the_queue_goes_on(
    queue, monkeypatch, error, said
):
    def failing_save(*args, **kwargs):
        raise error

    monkeypatch.setattr(queue.store, "save", failing_save)
    first = queue.submit(config(rounds=1), owner="frank", page_open=lambda: True)
    wait_for(first)
    assert first.state is JobState.DONE
    assert "not kept on disk" in first.message and said in first.message
    monkeypatch.undo()
    second = queue.submit(config(rounds=1), owner="grace", page_open=lambda: True)
    wait_for(second)
    assert second.state is JobState.DONE
    assert queue.store.load(second.job_id).history == second.history
