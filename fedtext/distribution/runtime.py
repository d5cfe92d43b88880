"""Owns TFF's C++ worker process: started on first use, restarted if it dies, always stopped;
and imports TensorFlow the quick way.

TFF's own `local_cpp_executor_factory` starts `worker_binary` with the parent's stdout and stderr
and stops it only in a `__del__`, so it can outlive Python and hold a caller's pipe open for
ever. This module builds the same execution context from TFF's own parts, but starts the worker
with its output in a log file, with a parent-death signal, and stops it at exit and on SIGTERM.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

from fedtext.distribution import binary
from fedtext.distribution.addresses import parse_workers
from fedtext.distribution.binary import WorkerError
from fedtext.text.plays import cache_dir

log = logging.getLogger(__name__)

# Clients the worker trains at once: one per core. More only take turns on the same cores,
# each holding its own activations (8 clients on 2 cores: 22.1 s -> 17.0 s a round, and
# peak worker memory 2.4 -> 2.1 GB).
_CONCURRENT_CLIENTS = len(os.sched_getaffinity(0))
# Training runs at a lower CPU priority than the page: on a shared 2-core machine a visitor's
# generation or click is answered first and a round only takes what is left.
_WORKER_NICENESS = 10
_GRPC_OPTIONS = [
    ("grpc.max_message_length", 2_000_000_000),
    ("grpc.max_receive_message_length", 2_000_000_000),
    ("grpc.max_send_message_length", 2_000_000_000),
]


def _prepare_child() -> None:
    """Runs in the child before exec: the parent-death signal, and a priority below the page's."""
    binary.die_with_parent()
    os.nice(_WORKER_NICENESS)


class WorkerService:
    """One worker process and the gRPC stub that talks to it."""

    def __init__(self, log_path: Path, concurrent_clients: int = _CONCURRENT_CLIENTS):
        self.log_path = log_path
        self.concurrent_clients = concurrent_clients
        self._process: subprocess.Popen | None = None
        self._stub = None
        self._replaced = 0  # workers found dead or unresponsive and replaced
        self._lock = threading.RLock()
        # PR_SET_PDEATHSIG fires when the *thread* that forked exits; Streamlit runs each
        # script in a short-lived thread, so all starts go through one thread that lives
        # as long as the process.
        self._launcher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tff-worker")

    @property
    def pid(self) -> int | None:
        process = self._process
        return process.pid if process is not None and process.poll() is None else None

    def get_stub(self):
        """A ready stub; starts (or restarts) the worker if there is none alive."""
        with self._lock:
            if self._stub is not None and self._process.poll() is None and self._stub.is_ready:
                return self._stub
            if self._process is not None:
                log.warning("TFF worker (pid %s) is gone; starting a new one", self._process.pid)
                self._replaced += 1
                self._terminate()
            return self._launcher.submit(self._start).result()

    def _start(self):
        # Deferred (as every TFF import here): the page imports this module before TensorFlow.
        import grpc
        import portpicker
        from tensorflow_federated.python.core.impl.executors import remote_executor_grpc_stub

        port = portpicker.pick_unused_port()
        self._process = binary.launch(port, self.concurrent_clients, self.log_path, _prepare_child)
        channel = grpc.insecure_channel(f"localhost:{port}", _GRPC_OPTIONS)
        self._stub = remote_executor_grpc_stub.RemoteExecutorGrpcStub(channel)
        deadline = time.monotonic() + binary.READY_TIMEOUT_S
        while not self._stub.is_ready:
            if self._process.poll() is not None:
                raise WorkerError(f"TFF worker exited at start; see {self.log_path}")
            if time.monotonic() > deadline:
                self._terminate()
                raise WorkerError(f"TFF worker not ready after {binary.READY_TIMEOUT_S:.0f} s")
            time.sleep(0.05)
        log.info("TFF worker started (pid %s, port %s)", self._process.pid, port)
        return self._stub

    @property
    def losses(self) -> int:
        """Workers lost so far: those replaced, and the current one if it has exited. A call
        during which this grew lost its worker."""
        with self._lock:
            process = self._process
            return self._replaced + (process is not None and process.poll() is not None)

    def _terminate(self) -> None:
        process, self._process, self._stub = self._process, None, None
        binary.stop(process)

    def stop(self) -> None:
        with self._lock:
            self._terminate()


# Worker groups: each runs one computation at a time, so runs with different settings train at
# once only on different groups; a thread's computations go to the group it chose (use_group).
_services: dict[int, WorkerService] = {}  # group -> this machine's own worker for it
_local_contexts: dict[int, object] = {}  # group -> TFF's execution context through its worker
_clusters: dict = {}  # group -> fedtext.distribution.cluster.Cluster, over `fedtext worker`s
_worker_groups: tuple | None = None  # use_workers(); None: FEDTEXT_WORKERS, if set
_install_lock = threading.Lock()
_thread = threading.local()  # .group: this thread's group; .groups: how many share the cores
# Another local worker group needs about this much: the page's default run peaks at 2.4 GB in
# its worker, and two cores train its clients (a 2-core machine stays at one run at a time).
_CORES_PER_LOCAL_GROUP = 2
_MEMORY_PER_LOCAL_GROUP = 4 * 2**30


class Parallelism(NamedTuple):
    """How many runs train at once here, and what allows it."""

    runs: int
    worker_groups: int  # groups of `fedtext worker`s (FEDTEXT_WORKERS); 0: this machine's own
    cores: int  # this machine's


def use_workers(addresses) -> None:
    """Run the next computations on these `fedtext worker` addresses (a sequence of
    `cluster.WorkerAddress`); on this machine's own worker with an empty one; as
    FEDTEXT_WORKERS says with None."""
    use_worker_groups(None if addresses is None else [addresses] if addresses else [])


def use_worker_groups(groups) -> None:
    """Like use_workers, with groups of addresses: one run at a time on each group."""
    global _worker_groups
    with _install_lock:
        _worker_groups = None if groups is None else tuple(tuple(g) for g in groups if g)
        for cluster in _clusters.values():
            cluster.close()
        _clusters.clear()


def use_group(group: int, groups: int = 1) -> None:
    """This thread's computations go to worker group `group` of `groups` (a training queue's
    thread each); a local group's worker then trains cores/groups clients at once."""
    _thread.group, _thread.groups = group, groups


def configured_groups() -> tuple:
    """The groups of workers: use_worker_groups()'s, else FEDTEXT_WORKERS's (groups split by
    `;`, the workers of one group by `,`), else none."""
    if _worker_groups is not None:
        return _worker_groups
    text = os.environ.get("FEDTEXT_WORKERS", "").strip()
    if not text:
        return ()
    try:
        groups = tuple(parse_workers(part) for part in text.split(";") if part.strip())
    except ValueError as error:
        raise WorkerError(f"FEDTEXT_WORKERS: {error}") from None
    listed = [a for group in groups for a in group]
    if len(set(listed)) < len(listed):
        raise WorkerError(f"FEDTEXT_WORKERS: a worker is in two groups in {text!r}")
    return groups


def configured_workers() -> tuple:
    """The workers this thread's computations go to: its group's, else none (this machine)."""
    groups = configured_groups()
    return groups[getattr(_thread, "group", 0) % len(groups)] if groups else ()


def parallelism(runs: int | None = None) -> Parallelism:
    """Runs that can train at once: one per group of `fedtext worker`s, else one per 2 cores
    and 4 GB of this machine (one on a 2-core machine); `runs` overrides."""
    cores = len(os.sched_getaffinity(0))
    try:
        groups = len(configured_groups())
    except WorkerError:  # the first run says why
        groups = 0
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    local = min(cores // _CORES_PER_LOCAL_GROUP, memory // _MEMORY_PER_LOCAL_GROUP)
    return Parallelism(runs or groups or max(1, int(local)), groups, cores)


def install(log_path: Path | None = None) -> WorkerService | None:
    """Make TFF run computations through our worker service, or over the configured
    `fedtext worker`s (idempotent, and for this thread); returns the local service, if used."""
    group = getattr(_thread, "group", 0)
    with _install_lock:
        workers = configured_workers()
        if workers and group not in _clusters:
            # Deferred, like every TFF import here: the page imports this module before
            # TensorFlow loads.
            from fedtext.distribution.cluster import Cluster

            cluster = Cluster(workers, _GRPC_OPTIONS)
            try:
                cluster.connect()
            except WorkerError:
                cluster.close()
                raise
            atexit.register(shutdown)
            _clusters[group] = cluster
            log.info("TFF rounds of group %d go to %s", group, ", ".join(map(str, workers)))
        if not workers and group not in _services:
            _install_local(group, log_path)
        _set_context_for_this_thread()
        return None if workers else _services[group]


def _install_local(group: int, log_path: Path | None) -> None:
    # Deferred: the page imports this module before TensorFlow.
    from tensorflow_federated.python.core.backends.native import compiler
    from tensorflow_federated.python.core.environments.tensorflow_frontend import (
        tensorflow_computation,
    )
    from tensorflow_federated.python.core.impl.execution_contexts import sync_execution_context
    from tensorflow_federated.python.core.impl.executor_stacks import python_executor_stacks
    from tensorflow_federated.python.core.impl.types import placements

    from fedtext.distribution.remote import RemoteExecutor

    name = "tff-worker.log" if group == 0 else f"tff-worker-{group}.log"
    clients = max(1, _CONCURRENT_CLIENTS // getattr(_thread, "groups", 1))
    service = WorkerService(log_path or cache_dir() / name, clients)

    def executor_stack(cardinalities):
        cardinalities.setdefault(placements.CLIENTS, 0)
        executor = RemoteExecutor(service.get_stub())
        executor.set_cardinalities(cardinalities)
        return executor

    _local_contexts[group] = sync_execution_context.SyncExecutionContext(
        executor_fn=python_executor_stacks.ResourceManagingExecutorFactory(executor_stack),
        compiler_fn=compiler.desugar_and_transform_to_native,
        transform_args=tensorflow_computation.transform_args,
        transform_result=tensorflow_computation.transform_result,
    )
    atexit.register(shutdown)
    _services[group] = service


def drop_worker(address) -> tuple:
    """After `cluster.WorkerLost`: leave that worker out of this thread's group; returns the
    workers that remain."""
    cluster = _clusters.get(getattr(_thread, "group", 0))
    return cluster.drop(address) if cluster is not None else ()


def import_tensorflow(quiet: bool = False) -> None:
    """Import TensorFlow without the JAX that its TFLite converter imports if installed (1.1 s
    of TensorFlow's 7 s here, for a converter fedtext never uses). TFF imports JAX itself when
    it loads, so nothing is lost; this only moves JAX out of the way of the first text.

    `quiet` holds back the start-up lines TensorFlow's C++ side writes on every import (for a
    command line's main thread only: it redirects the process's stderr meanwhile)."""
    if "tensorflow" in sys.modules or "jax" in sys.modules:
        return
    sys.modules["jax"] = None  # `import jax` raises ImportError, which TFLite handles
    try:
        with _startup_lines_held_back() if quiet else contextlib.nullcontext():
            import tensorflow  # noqa: F401
    finally:
        del sys.modules["jax"]


# Written by TensorFlow's C++ start-up on every import on a machine without a GPU; they tell a
# user nothing and bury a real error among them.
_STARTUP_NOISE = re.compile(
    r"Unable to register cu(DNN|FFT|BLAS) factory|TF-TRT Warning|oneDNN custom operations"
    r"|This TensorFlow binary is optimized|rebuild TensorFlow with the appropriate compiler"
    r"|Could not find cuda drivers|Could not find TensorRT"
)


@contextlib.contextmanager
def _startup_lines_held_back():
    """Collect what is written to file descriptor 2 meanwhile; pass on all but the noise."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            for line in held.read().decode(errors="replace").splitlines(keepends=True):
                if not _STARTUP_NOISE.search(line):
                    sys.stderr.write(line)
            sys.stderr.flush()


def _set_context_for_this_thread() -> None:
    """TFF's context stack is thread-local: each thread that runs computations needs it set."""
    # Deferred: the page imports this module before TensorFlow.
    from tensorflow_federated.python.core.impl.context_stack import context_stack_impl

    group = getattr(_thread, "group", 0)
    cluster = _clusters.get(group)
    context = cluster.context if cluster is not None else _local_contexts[group]
    context_stack_impl.context_stack.set_default_context(context)


def worker_cpu_seconds() -> float:
    """CPU time this thread's local TFF worker has used (0 when there is none): with this
    process's own CPU time, what a federated round costs."""
    service = _services.get(getattr(_thread, "group", 0))
    pid = service.pid if service is not None else None
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


def worker_losses() -> int:
    """How many times this thread's group's own TFF worker has been lost (0 without one)."""
    service = _services.get(getattr(_thread, "group", 0))
    return service.losses if service is not None else 0


def shutdown() -> None:
    """Stop the worker if one runs, and close the connections to remote ones; safe to call
    any number of times."""
    for service in list(_services.values()):
        service.stop()
    for cluster in list(_clusters.values()):
        cluster.close()


def stop_on_sigterm() -> None:
    """For command-line use: on SIGTERM stop the worker, then exit as SIGTERM would."""
    if threading.current_thread() is not threading.main_thread():
        return

    def handle(signum, frame):
        shutdown()
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)

    signal.signal(signal.SIGTERM, handle)
