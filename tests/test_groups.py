"""Different settings at once, one run per worker group: two `fedtext worker`s on loopback as
two groups, two runs with different settings training at the same time through the page's
training queue, each with the rounds and weights of the same settings trained alone; and
FEDTEXT_WORKERS's groups, and how many runs a machine trains at once."""

from __future__ import annotations

import time

import numpy as np
import pytest

from fedtext.distribution import runtime
from fedtext.distribution.binary import WorkerError
from fedtext.distribution.cluster import WorkerAddress
from fedtext.learning.training import FederatedTrainer
from fedtext.service.jobs import JobState, TrainingQueue
from fedtext.service.store import RunStore
from tests.conftest import plain_fedavg, wait_for
from tests.test_cluster import cpu_seconds, workers  # noqa: F401 (a fixture)

CLIENTS = ("KING_LEAR_FOOL", "KING_LEAR_KENT")


def test_two_worker_groups_train_two_settings_at_once_each_as_alone(
    client_data,
    tiny_model_dir,
    workers,  # noqa: F811 (the fixture imported above)
    tmp_path,
):
    train, test = client_data
    first, second = workers(), workers()
    runtime.use_worker_groups([[first.address], [second.address]])
    queue = TrainingQueue(train, test, tiny_model_dir, store=RunStore(tmp_path))
    assert queue.parallelism == runtime.Parallelism(2, 2, queue.parallelism.cores)
    settings = [
        plain_fedavg(client_ids=CLIENTS, rounds=4, batches_per_client=3, seed=seed)
        for seed in (0, 1)
    ]
    busy = [cpu_seconds(w.binary()) for w in (first, second)]
    jobs = [queue.submit(c, f"visitor-{i}", lambda: True) for i, c in enumerate(settings)]
    deadline, together = time.monotonic() + 300, False
    while not together and not all(j.finished for j in jobs) and time.monotonic() < deadline:
        # Both between their first and last round: neither waits for the other.
        together = all(j.state is JobState.RUNNING and 1 <= len(j.history) <= 4 for j in jobs)
        time.sleep(0.01)
    assert together, "the two runs never trained at the same time"
    for job in jobs:
        wait_for(job, timeout=300)
        assert job.state is JobState.DONE, job.message
    worked = [cpu_seconds(w.binary()) - b for w, b in zip((first, second), busy, strict=True)]
    assert min(worked) > 0, f"a worker group trained nothing: CPU seconds {worked}"

    runtime.use_workers(None)  # alone, on this machine's own worker
    for job, config in zip(jobs, settings, strict=True):
        alone = FederatedTrainer(config, train, test, tiny_model_dir)
        solo = list(alone.rounds())
        for shared, own in zip(job.history, solo, strict=True):
            assert shared.round_num == own.round_num
            assert shared.eval_loss == pytest.approx(own.eval_loss, rel=1e-5)
        for a, b in zip(job.weights, alone.weights, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_fedtext_workers_lists_groups_split_by_semicolons(monkeypatch):
    runtime.use_worker_groups(None)
    monkeypatch.setenv("FEDTEXT_WORKERS", "h1:5001,h2:5002; h3:5003")
    assert runtime.configured_groups() == (
        (WorkerAddress("h1", 5001), WorkerAddress("h2", 5002)),
        (WorkerAddress("h3", 5003),),
    )
    assert runtime.parallelism().runs == 2 and runtime.parallelism().worker_groups == 2
    runtime.use_group(1, 2)
    try:
        assert runtime.configured_workers() == (WorkerAddress("h3", 5003),)
    finally:
        runtime.use_group(0, 1)
    monkeypatch.setenv("FEDTEXT_WORKERS", "h1:5001;h1:5001")
    with pytest.raises(WorkerError, match="a worker is in two groups"):
        runtime.configured_groups()


def test_a_machine_trains_one_run_at_a_time_per_two_cores_and_four_gigabytes(monkeypatch):
    monkeypatch.delenv("FEDTEXT_WORKERS", raising=False)
    runtime.use_worker_groups(None)
    cores = len(runtime.os.sched_getaffinity(0))
    memory = runtime.os.sysconf("SC_PAGE_SIZE") * runtime.os.sysconf("SC_PHYS_PAGES")
    expected = max(1, min(cores // 2, memory // (4 * 2**30)))
    assert runtime.parallelism() == runtime.Parallelism(expected, 0, cores)
    if cores <= 3:  # this machine kind (2 cores): one at a time, as before
        assert expected == 1
    assert runtime.parallelism(3).runs == 3  # a queue told otherwise
