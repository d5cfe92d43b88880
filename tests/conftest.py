"""Shared fixtures: a tiny model in the real file format, the real plays' data, and a guard
that no test leaves TFF's worker process behind."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# The plays' database is built once and reused across runs (it depends only on the plays).
os.environ.setdefault("FEDTEXT_CACHE", str(ROOT / ".cache" / "test-data"))

TINY = {"embedding_dim": 8, "rnn_units": 32}  # small enough for a TFF round in seconds


def worker_pids() -> list[int]:
    out = subprocess.run(
        ["pgrep", "-P", str(os.getpid()), "-f", "worker_binary"], capture_output=True, text=True
    ).stdout
    return [int(pid) for pid in out.split()]


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A randomly initialised small model saved like the shipped one."""
    import tensorflow as tf

    from fedtext.config import ModelConfig
    from fedtext.model import build_model, save_weights

    tf.keras.utils.set_random_seed(0)
    config = ModelConfig(**TINY)
    directory = tmp_path_factory.mktemp("tiny-model")
    save_weights(build_model(config), config, directory)
    return directory


@pytest.fixture(scope="session")
def database():
    from fedtext import data

    return data.database_path()


@pytest.fixture(scope="session")
def client_data(database):
    from fedtext import data

    return data.load_client_data(database)


@pytest.fixture(scope="session", autouse=True)
def no_worker_left_behind():
    yield
    from fedtext import runtime

    runtime.shutdown()
    assert worker_pids() == [], "a TFF worker process outlived the tests"
