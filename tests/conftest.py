"""Shared fixtures and helpers: a tiny model in the real file format, the real plays' data, a
guard that no test leaves TFF's worker process behind, a learning process whose worker is killed
mid-round, waiting for a queued job, and `streamlit run app.py` for the browser tests."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# The plays' database is built once and reused across runs (it depends only on the plays).
os.environ.setdefault("FEDTEXT_CACHE", str(ROOT / ".cache" / "test-data"))

TINY = {"embedding_dim": 8, "rnn_units": 32}  # small enough for a TFF round in seconds


EXIT_STATUS = pytest.StashKey[int]()  # pytest's status, kept for the exit below


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    session.config.stash[EXIT_STATUS] = int(exitstatus)


def pytest_unconfigure(config: pytest.Config) -> None:
    """Leave once pytest has reported, without the interpreter's finalisation. The engines of
    the AppTest pages (daemon threads inside TensorFlow and gRPC, alive until exit) made it
    abort (status 134) or hang after every test had passed: `tests/test_app.py` alone, 29
    passed in 102 s, then 20 minutes hung."""
    if EXIT_STATUS in config.stash:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(config.stash[EXIT_STATUS])


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
    from fedtext.model.keras_model import build_model, save_weights

    tf.keras.utils.set_random_seed(0)
    config = ModelConfig(**TINY)
    directory = tmp_path_factory.mktemp("tiny-model")
    save_weights(build_model(config), config, directory)
    return directory


@pytest.fixture(scope="module")
def page_env(tiny_model_dir, tmp_path_factory):
    """The tiny base model and a fresh runs directory, for the page run in this process."""
    # Streamlit's test harness, imported only by the page's tests.
    from streamlit.runtime.scriptrunner.script_cache import ScriptCache
    from streamlit.testing.v1 import app_test, local_script_runner

    data_root = tmp_path_factory.mktemp("page-data")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FEDTEXT_BASE_MODEL", str(tiny_model_dir))
        patch.setenv("FEDTEXT_DATA", str(data_root))
        # A server parses app.py once (one ScriptCache); AppTest parses it on every run, and on
        # CPython 3.11.7 a parse while TFF traces in another thread can fail (gh-106905).
        shared_cache = ScriptCache()
        for module in (app_test, local_script_runner):
            patch.setattr(module, "ScriptCache", lambda: shared_cache)
        yield data_root


@pytest.fixture(scope="session")
def database():
    from fedtext.text import plays

    return plays.database_path()


@pytest.fixture(scope="session")
def client_data(database):
    from fedtext.text import plays

    return plays.load_client_data(database)


@pytest.fixture(scope="session", autouse=True)
def no_worker_left_behind():
    yield
    from fedtext.distribution import runtime

    runtime.shutdown()
    assert worker_pids() == [], "a TFF worker process outlived the tests"


# ---------------------------------------------------------------- a worker killed mid-round


class KillingProcess:
    """The real learning process, with a thread killing every TFF worker while `next` runs."""

    def __init__(self, process):
        self._process = self.__wrapped__ = process
        self.kills = 0

    def __getattr__(self, name):
        return getattr(self._process, name)

    def next(self, state, data):
        done = threading.Event()

        def kill_workers():
            while not done.is_set():
                from fedtext.distribution import runtime

                pid = runtime.install().pid
                if pid is not None:
                    # The pid read may already be reaped (the runtime restarting a killed
                    # worker); the killer must outlive that and kill the next one too.
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                        self.kills += 1
                done.wait(0.02)

        killer = threading.Thread(target=kill_workers)
        killer.start()
        try:
            return self._process.next(state, data)
        finally:
            done.set()
            killer.join()


def plain_fedavg(**settings):
    """Plain Federated Averaging with plain SGD (the tutorial's algorithm) at a tiny model's
    rate, 2 batches a client: the server's new model is the base plus the averaged update."""
    from fedtext.config import FederatedConfig

    plain = dict(
        client_optimizer="sgd",
        client_learning_rate=1.0,
        clip_norm=0.0,
        server_optimizer="sgd",
        server_learning_rate=1.0,
        batches_per_client=2,
    )
    return FederatedConfig(**{**plain, **settings})


def wait_for(job, timeout=120):
    """Until the queue is done with the job: finished, and its run stored."""
    deadline = time.monotonic() + timeout
    while job.ended is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert job.finished and job.ended is not None, f"job still {job.state} after {timeout} s"


# ---------------------------------------------------------------- the page in a real browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
USABLE_JS = """() => {
    // Streamlit 1.52 marks a running script with an icon labelled "Running...".
    if (document.querySelector('[data-testid="stStatusWidget"] [aria-label="Running..."]')) {
        return false;
    }
    const train = [...document.querySelectorAll('button')].find(b => b.innerText.includes('Train'));
    return !!train && !train.disabled && !!document.querySelector('.st-key-base_text pre');
}"""


def my_workers(marker: str) -> list[int]:
    """TFF worker processes started under our server: they inherit its environment."""
    out = subprocess.run(["pgrep", "-f", "worker_binary"], capture_output=True, text=True).stdout
    pids = []
    for pid in map(int, out.split()):
        try:
            if marker.encode() in Path(f"/proc/{pid}/environ").read_bytes():
                pids.append(pid)
        except OSError:  # gone meanwhile, or not ours to read
            pass
    return pids


def die_with_pytest() -> None:
    """In the server's child process before exec: SIGTERM when pytest's main thread ends."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def stop(process: subprocess.Popen) -> None:
    """SIGTERM, as a container runtime would; SIGKILL if it does not end."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def server(request, tmp_path):
    """`streamlit run app.py` on a free local port with the tiny model; stopped afterwards,
    leaving no TFF worker behind.

    With FEDTEXT_BROWSER_URL set, the page already served there instead (the built Space:
    scripts/space_check.sh), as it is, with its own model; FEDTEXT_BROWSER_MARKER is a string in
    that server's environment, which its TFF workers inherit. Whoever started that server stops
    it and checks that no worker outlives it."""
    external = os.environ.get("FEDTEXT_BROWSER_URL")
    if external:
        marker = os.environ.get("FEDTEXT_BROWSER_MARKER")
        assert marker, (
            "FEDTEXT_BROWSER_URL needs FEDTEXT_BROWSER_MARKER (see scripts/space_check.sh)"
        )
        yield external.rstrip("/"), time.perf_counter(), marker
        return

    import portpicker

    tiny_model_dir = request.getfixturevalue("tiny_model_dir")
    port = portpicker.pick_unused_port()
    data_root = tmp_path / "page-data"
    env = {**os.environ, "FEDTEXT_BASE_MODEL": str(tiny_model_dir), "FEDTEXT_DATA": str(data_root)}
    command = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        "app.py",
        "--server.port",
        str(port),
        "--server.address",
        "127.0.0.1",
        "--server.headless",
        "true",
        "--server.fileWatcherType",
        "none",
        "--browser.gatherUsageStats",
        "false",
    ]
    log = open(tmp_path / "streamlit.log", "wb")
    started = time.perf_counter()
    # If pytest itself is killed (a timeout), the server and its TFF worker go with it.
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, preexec_fn=die_with_pytest
    )
    try:
        yield f"http://127.0.0.1:{port}", started, str(data_root)
    finally:
        stop(process)
        log.close()
        deadline = time.monotonic() + 15
        while my_workers(str(data_root)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert my_workers(str(data_root)) == [], "the page's TFF worker outlived its server"
