"""The TFF worker dies in the middle of a round: the round fails with a message, the worker is
started again, and training goes on from the last finished round."""

import numpy as np
import pytest

from fedtext.config import FederatedConfig
from fedtext.distribution import runtime
from fedtext.distribution.runtime import WorkerError
from fedtext.learning import training
from fedtext.learning.training import FederatedTrainer
from tests.conftest import KillingProcess, wait_for


def test_worker_killed_mid_round_then_training_goes_on(client_data, tiny_model_dir, monkeypatch):
    train, test = client_data
    config = FederatedConfig(
        client_ids=("KING_LEAR_FOOL", "KING_LEAR_KENT"),
        rounds=3,
        client_learning_rate=1.0,
        batches_per_client=2,
    )
    trainer = FederatedTrainer(config, train, test, tiny_model_dir)
    rounds = trainer.rounds()
    assert [next(rounds).round_num, next(rounds).round_num] == [0, 1]
    kept = [w.copy() for w in trainer.weights]

    real_build = training.build_process
    killing = KillingProcess(
        real_build(trainer.model_config, config.client_optimizer, config.server_optimizer)
    )
    monkeypatch.setattr(training, "build_process", lambda *args: killing)
    with pytest.raises(WorkerError, match="round 2 failed in the TFF worker"):
        list(trainer.rounds())
    assert killing.kills >= 1
    assert len(trainer.history) == 2
    assert all(np.array_equal(a, b) for a, b in zip(kept, trainer.weights, strict=True))

    monkeypatch.setattr(training, "build_process", real_build)
    resumed = list(trainer.rounds())
    assert [r.round_num for r in resumed] == [2, 3]
    assert runtime.install().pid is not None  # a new worker serves the resumed rounds


def test_a_queued_run_whose_worker_died_resumes(client_data, tiny_model_dir, tmp_path, monkeypatch):
    from fedtext.service.jobs import JobState, TrainingQueue
    from fedtext.service.store import RunStore

    train, test = client_data
    queue = TrainingQueue(
        train, test, tiny_model_dir, store=RunStore(tmp_path), heartbeat_timeout=0.0
    )
    real_build = training.build_process
    killing = {}
    monkeypatch.setattr(
        training,
        "build_process",
        lambda *args: killing.setdefault("p", KillingProcess(real_build(*args))),
    )
    config = FederatedConfig(client_ids=("KING_LEAR_FOOL",), rounds=2, batches_per_client=1)
    # No polls at all (timeout 0): the open page alone keeps the job alive.
    job = queue.submit(config, owner="erin", page_open=lambda: True)
    wait_for(job)
    assert job.state is JobState.FAILED and job.resumable
    assert "round 1 failed in the TFF worker" in job.message

    monkeypatch.setattr(training, "build_process", real_build)
    assert queue.resume(job.job_id)
    wait_for(job)
    assert job.state is JobState.DONE, job.message
    assert [r.round_num for r in job.history] == [0, 1, 2]
    assert queue.store.load(job.job_id).history == job.history
    assert not queue.resume(job.job_id)  # only a failed run resumes
