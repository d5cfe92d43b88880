"""TFF's C++ `worker_binary`: where it is, how it is started and how it is ended, in one place
for this machine's worker (`runtime`) and for `fedtext worker` (`worker`).

Found without importing TFF (and TensorFlow with it); its output goes to a log file, never to
a caller's pipe; it gets SIGTERM when the thread that started it ends (a parent-death signal),
and it is ended with SIGTERM, then SIGKILL if it does not go."""

from __future__ import annotations

import ctypes
import functools
import importlib.util
import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

READY_TIMEOUT_S = 60.0  # the binary answers within seconds; a minute means it will not
STOP_GRACE_S = 10.0  # after SIGTERM, before SIGKILL
_PR_SET_PDEATHSIG = 1


class WorkerError(RuntimeError):
    """A TFF worker could not be started, or died; one-line reason."""


@functools.cache
def binary_path() -> Path:
    """TFF's worker binary inside the installed package; looked up once per process, as
    `fedtext.text.plays.plays_dir` is (a sys.path search can miss while another thread edits
    sys.path)."""
    spec = importlib.util.find_spec("tensorflow_federated")
    if spec is None or not spec.submodule_search_locations:
        raise WorkerError("TensorFlow Federated is not installed; run scripts/setup.sh")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "worker_binary"
    if not path.is_file():
        raise WorkerError(f"TFF's worker binary is missing at {path}; reinstall the project")
    return path


def binary_env(concurrent_clients: int) -> dict[str, str]:
    """The binary's environment; a value already in the environment wins.

    glibc gives each of the worker's threads (gRPC's, TensorFlow's pools, a client per core) an
    arena of its own, up to 8 per core, and keeps what a round freed in them: with 2 arenas the
    page's default run peaked at 1.63 GB in the worker instead of 1.84 GB. With a client per
    core, TensorFlow's default of an intra-op thread per core has two clients' threads take
    turns on every core: one each cost 13% less CPU for the same rounds (2 clients x 4 steps
    of 64 on 2 cores, 7.86 -> 6.82 CPU s a round) and no more wall time.
    """
    cores = len(os.sched_getaffinity(0))
    return {
        "MALLOC_ARENA_MAX": "2",
        "TF_NUM_INTRAOP_THREADS": str(max(1, cores // max(1, concurrent_clients))),
        **os.environ,
    }


def die_with_parent() -> None:
    """In a child before exec: SIGTERM it when the thread that forked it ends."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def launch(
    port: int,
    concurrent_clients: int,
    log_path: Path,
    prepare: Callable[[], None] = die_with_parent,
) -> subprocess.Popen:
    """Start the binary on `port`, its output appended to `log_path`; `prepare` runs in the
    child before exec and must set the parent-death signal."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log_file:
        return subprocess.Popen(
            [
                str(binary_path()),
                f"--port={port}",
                f"--max_concurrent_computation_calls={concurrent_clients}",
            ],
            env=binary_env(concurrent_clients),
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            preexec_fn=prepare,
        )


def stop(process: subprocess.Popen | None, grace_s: float = STOP_GRACE_S) -> None:
    """End a process: SIGTERM, then SIGKILL if it is still there after `grace_s`."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
