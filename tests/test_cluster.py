"""Rounds across several `fedtext worker`s on loopback: the same result as one worker, a worker
killed mid-round named in a notice and the round run again on the other, the lost worker taken
back when it returns, and no worker process left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from concurrent import futures
from pathlib import Path

import grpc
import numpy as np
import portpicker
import pytest

from fedtext.distribution import runtime
from fedtext.distribution.addresses import WorkerAddress, parse_workers
from fedtext.distribution.cluster import Cluster, ClusterError
from fedtext.distribution.worker import start_loopback
from fedtext.learning.training import FederatedTrainer
from tests.conftest import ROOT, plain_fedavg, stop

CLIENTS = ("KING_LEAR_KING_LEAR", "KING_LEAR_FOOL", "KING_LEAR_KENT", "KING_LEAR_EDGAR")


def descendants(pid: int) -> list[int]:
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    return [p for child in map(int, children) for p in (child, *descendants(child))]


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class LoopbackWorker:
    """`python -m fedtext worker --port P` as a user would start it, on this machine."""

    def __init__(self, port: int, log: Path):
        self.address = WorkerAddress("127.0.0.1", port)
        self.log = log
        self.process = start_loopback(port, log)
        self.pids: set[int] = {self.process.pid}
        assert self.binary() is not None

    def binary(self) -> int | None:
        for pid in descendants(self.process.pid):
            self.pids.add(pid)
            if "worker_binary" in Path(f"/proc/{pid}/cmdline").read_bytes().decode(
                errors="replace"
            ):
                return pid
        return None


@pytest.fixture
def workers(tmp_path):
    started: list[LoopbackWorker] = []

    def start(port: int | None = None) -> LoopbackWorker:
        worker = LoopbackWorker(port or portpicker.pick_unused_port(), tmp_path / "worker.log")
        started.append(worker)
        return worker

    yield start
    runtime.use_workers(None)  # back to this machine's own worker
    for worker in started:
        stop(worker.process)
    deadline = time.monotonic() + 20
    while any(alive(p) for w in started for p in w.pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = [p for w in started for p in w.pids if alive(p)]
    assert left == [], f"worker processes outlived their `fedtext worker`: {left}"


def test_a_worker_listens_on_loopback_only_and_its_binary_nowhere_here(workers):
    worker = workers()
    listening = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, port = local.split(":")
            if state == "0A" and int(port, 16) == worker.address.port:
                listening.append(address)
    assert listening == ["0100007F"]  # 127.0.0.1, and TFF's worker_binary is not reachable
    assert worker.binary() is not None


def test_a_round_across_two_workers_survives_losing_one(client_data, tiny_model_dir, workers):
    train, test = client_data
    config = plain_fedavg(client_ids=CLIENTS, rounds=3, batches_per_client=3)
    reference = FederatedTrainer(config, train, test, tiny_model_dir)
    expected = [[w.copy() for w in reference.weights] for _ in reference.rounds()]

    first, second = workers(), workers()
    runtime.use_workers([first.address, second.address])
    trainer = FederatedTrainer(config, train, test, tiny_model_dir)
    rounds = trainer.rounds()
    assert next(rounds).round_num == 0

    busy = [cpu_seconds(w.binary()) for w in (first, second)]
    assert next(rounds).round_num == 1
    for got, want in zip(trainer.weights, expected[1], strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    worked = [
        cpu_seconds(w.binary()) - before for w, before in zip((first, second), busy, strict=True)
    ]
    assert min(worked) > 0, f"a worker did no share of the round: CPU seconds {worked}"

    # Round 2: the second worker holds its share of the clients (stopped), and dies.
    lost_binary, first_binary = second.binary(), first.binary()
    os.kill(lost_binary, signal.SIGSTOP)
    started = cpu_seconds(first_binary)

    def kill_mid_round():
        deadline = time.monotonic() + 60
        while cpu_seconds(first_binary) == started and time.monotonic() < deadline:
            time.sleep(0.02)  # until the round is under way on the other worker
        os.kill(lost_binary, signal.SIGKILL)

    killer = threading.Thread(target=kill_mid_round)
    killer.start()
    assert next(rounds).round_num == 2
    killer.join()
    assert trainer.notices == [
        f"round 2 failed: TFF worker {second.address} stopped answering (UNAVAILABLE); "
        f"running it again on {first.address}"
    ]
    for got, want in zip(trainer.weights, expected[2], strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    second.process.wait(timeout=30)  # its `fedtext worker` ends with its binary

    # The lost worker comes back at its address and takes its share of round 3.
    back = workers(second.address.port)
    returned = cpu_seconds(back.binary())
    assert next(rounds).round_num == 3
    assert cpu_seconds(back.binary()) > returned
    for got, want in zip(trainer.weights, expected[3], strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_a_worker_that_does_not_answer_is_named():
    silent = WorkerAddress("127.0.0.1", portpicker.pick_unused_port())
    cluster = Cluster([silent], [])
    try:
        with pytest.raises(ClusterError, match=f"no answer from TFF worker {silent} after 1 s"):
            cluster.connect(timeout=1)
    finally:
        cluster.close()


def test_a_returned_worker_is_taken_back_however_long_it_was_away():
    """gRPC shares a subchannel per address between channels: a probe's new channel used to
    inherit the backoff the failed probes built up, and missed a worker that was back."""
    address = WorkerAddress("127.0.0.1", portpicker.pick_unused_port())
    cluster = Cluster([address], [])
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    try:
        cluster.drop(address)
        for _ in range(5):  # a worker away for a while: each check before a computation fails
            cluster._take_back_returned()
        assert cluster.active == ()
        server.add_insecure_port(str(address))
        server.start()
        cluster._take_back_returned()
        assert cluster.active == (address,)
    finally:
        server.stop(None)
        cluster.close()


@pytest.mark.parametrize(
    "text, message",
    [
        ("localhost", "not HOST:PORT"),
        ("localhost:0", "port from 1 to 65535"),
        ("localhost:99999", "port from 1 to 65535"),
        ("a b:5000", "not a host name or address"),
        ("::1:5000", "write an IPv6 address as"),
        ("h:1,h:1", "listed twice"),
        (" , ", "no workers given"),
    ],
)
def test_worker_lists_are_checked(text, message):
    with pytest.raises(ValueError, match=message):
        parse_workers(text)


def test_worker_lists_parse():
    assert parse_workers("10.0.0.2:8000, [::1]:8001,node-3:8002") == (
        WorkerAddress("10.0.0.2", 8000),
        WorkerAddress("::1", 8001),
        WorkerAddress("node-3", 8002),
    )
    assert str(WorkerAddress("::1", 8001)) == "[::1]:8001"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["finetune", "--workers", "nowhere", "--output", "x"], "not HOST:PORT"),
        (["worker", "--port", "70000"], "--port 70000 is not a port from 1 to 65535"),
    ],
)
def test_bad_worker_options_get_one_line(argv, message):
    done = subprocess.run(
        [sys.executable, "-m", "fedtext", *argv], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_the_workers_benchmark_times_rounds_on_one_two_and_three_workers(
    tiny_model_dir, tmp_path, client_data
):
    from fedtext import bench
    from fedtext.bench.workers import run_workers

    train, test = client_data
    settings = bench.Settings(
        base_dir=tiny_model_dir, out_dir=tmp_path, sections=("workers",), quick=True
    )
    results = bench.Results(settings)
    run_workers({"train": train, "test": test}, settings, results)
    rows = {row.key: row for row in results.rows}
    assert rows["workers.local_round_s"].value > 0
    for count in (1, 2, 3):
        row = rows[f"workers.round_s.{count}"]
        assert row.value > 0 and "x the own worker" in row.note
        assert rows[f"workers.traffic_mb.{count}"].value > rows["workers.state_mb"].value
    parameters = sum(w.size for w in np.load(tiny_model_dir / "weights.npz").values())
    assert rows["workers.state_mb"].value == pytest.approx(parameters * 4 / 1e6)  # float32


def test_without_user_namespaces_a_worker_refuses_to_listen_everywhere_unasked(
    tmp_path, monkeypatch
):
    from fedtext.distribution import worker

    def no_namespaces():
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(worker, "_enter_private_network", no_namespaces)
    with pytest.raises(worker.WorkerStartError, match=r"pass --host 0\.0\.0\.0 to accept that"):
        worker.serve(portpicker.pick_unused_port(), "127.0.0.1", tmp_path / "w.log", 1)
