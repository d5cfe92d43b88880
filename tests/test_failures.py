"""A round that fails for any reason but a lost TFF worker (here a fault in the code) is not
offered as resumable: it says what failed, and its traceback reaches the server log (the page)
or the terminal with FEDTEXT_DEBUG=1 (the command line). A lost worker: tests/test_faults.py."""

import logging
import traceback

import pytest

from fedtext.cli import main
from fedtext.config import FederatedConfig
from fedtext.distribution.runtime import WorkerError
from fedtext.learning import training
from fedtext.learning.failures import RoundFailed
from fedtext.learning.training import FederatedTrainer
from fedtext.service.jobs import JobState, TrainingQueue
from fedtext.service.store import RunStore
from tests.conftest import wait_for

CONFIG = FederatedConfig(client_ids=("KING_LEAR_FOOL",), rounds=2, batches_per_client=1)


class FaultyProcess:
    """The real learning process, whose rounds raise as a fault in fedtext's code would."""

    def __init__(self, process):
        self._process = self.__wrapped__ = process

    def __getattr__(self, name):
        return getattr(self._process, name)

    def next(self, state, data):
        raise TypeError("boom: a fault in the code")


@pytest.fixture
def faulty(monkeypatch):
    real = training.build_process
    monkeypatch.setattr(training, "build_process", lambda *args: FaultyProcess(real(*args)))


def test_a_fault_in_a_round_is_not_called_a_lost_worker(faulty, client_data, tiny_model_dir):
    trainer = FederatedTrainer(CONFIG, *client_data, tiny_model_dir)
    with pytest.raises(RoundFailed, match=r"^round 1 failed: TypeError: boom") as failed:
        list(trainer.rounds())
    assert not isinstance(failed.value, WorkerError)
    assert isinstance(failed.value.__cause__, TypeError)  # the traceback rides along
    assert [r.round_num for r in trainer.history] == [0]


def test_a_queued_run_with_a_fault_fails_for_good_and_logs_its_traceback(
    faulty, client_data, tiny_model_dir, tmp_path, caplog
):
    queue = TrainingQueue(*client_data, tiny_model_dir, store=RunStore(tmp_path))
    with caplog.at_level(logging.ERROR, logger="fedtext.service.jobs"):
        job = queue.submit(CONFIG, owner="frank", page_open=lambda: True)
        wait_for(job)
    assert job.state is JobState.FAILED and not job.resumable
    assert job.message.startswith("round 1 failed: TypeError: boom"), job.message
    assert "traceback in the server log" in job.message
    assert not queue.resume(job.job_id)  # the same round would fail the same way
    logged = [
        "".join(traceback.format_exception(*record.exc_info))
        for record in caplog.records
        if record.exc_info and job.job_id in record.getMessage()
    ]
    assert logged and "TypeError: boom" in logged[0] and "Traceback" in logged[0]


def test_the_command_line_says_what_failed_and_debug_shows_the_traceback(
    faulty, tiny_model_dir, tmp_path, capsys, monkeypatch, database
):
    argv = [
        "finetune", "--base", str(tiny_model_dir), "--clients", "KING_LEAR_FOOL",
        "--rounds", "1", "--batches", "1", "--output", str(tmp_path / "out"),
    ]  # fmt: skip
    monkeypatch.delenv("FEDTEXT_DEBUG", raising=False)
    assert main(argv) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fedtext: round 1 failed: TypeError: boom")
    assert "FEDTEXT_DEBUG=1 shows the traceback" in lines[0] and "unexpected" not in lines[0]

    monkeypatch.setenv("FEDTEXT_DEBUG", "1")
    with pytest.raises(RoundFailed) as failed:
        main(argv)
    shown = "".join(traceback.format_exception(failed.value))
    assert "TypeError: boom" in shown and "direct cause" in shown
