"""One round over several TFF workers (`fedtext worker` on other machines, or this one).

TFF's own machinery does the spreading: `compile_to_mergeable_comp_form` splits a round at its
aggregation, and `MergeableCompExecutionContext` runs each worker's share of the clients in that
worker's `AsyncExecutionContext`, then merges the partial sums. What fedtext adds is the
failure story: TFF retries a worker that stopped answering for ever, so each worker's stub
turns gRPC's "unavailable" into `WorkerLost` naming it; the caller drops that worker and runs
the round again over the others, and a worker that answers again is taken back before the
next computation.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

import grpc
from tensorflow_federated.python.core.backends.native import compiler, mergeable_comp_compiler
from tensorflow_federated.python.core.environments.tensorflow_frontend import (
    tensorflow_computation,
)
from tensorflow_federated.python.core.impl.context_stack import context_base
from tensorflow_federated.python.core.impl.execution_contexts import (
    async_execution_context,
    mergeable_comp_execution_context,
    sync_execution_context,
)
from tensorflow_federated.python.core.impl.executor_stacks import python_executor_stacks
from tensorflow_federated.python.core.impl.executors import (
    executors_errors,
    remote_executor_grpc_stub,
)
from tensorflow_federated.python.core.impl.types import placements

from fedtext.distribution.addresses import WorkerAddress
from fedtext.distribution.binary import WorkerError
from fedtext.distribution.remote import RemoteExecutor

log = logging.getLogger(__name__)

_CONNECT_TIMEOUT_S = 30.0
_PROBE_TIMEOUT_S = 2.0  # a lost worker's check before each computation, under load
_RETURN_TIMEOUT_S = 60.0  # with every worker lost: how long to wait for one to come back


class WorkerLost(WorkerError):
    """A worker stopped answering during a computation."""

    def __init__(self, address: WorkerAddress, detail: str = ""):
        self.address = address
        super().__init__(
            f"TFF worker {address} stopped answering" + (f" ({detail})" if detail else "")
        )


class ClusterError(WorkerError):
    """No worker to run on, or a worker list that cannot be used; one line."""


class _Connection:
    """One worker's gRPC channel, and the stub TFF's executors call through it."""

    def __init__(self, address: WorkerAddress, grpc_options: Sequence[tuple[str, int]]):
        self.address = address
        # A subchannel of its own: gRPC otherwise shares one per address across channels, so a
        # new channel to a worker that was down inherited the old one's backoff (measured: a
        # probe 2 s after the worker was back still failed; with its own pool it answered in 0.2 s).
        options = [*grpc_options, ("grpc.use_local_subchannel_pool", 1)]
        self.channel = grpc.insecure_channel(str(address), options)
        self.stub = _FailFastStub(
            remote_executor_grpc_stub.RemoteExecutorGrpcStub(self.channel), address
        )

    def answers(self, timeout: float) -> bool:
        try:
            grpc.channel_ready_future(self.channel).result(timeout=timeout)
            return True
        except grpc.FutureTimeoutError:
            return False

    def close(self) -> None:
        self.channel.close()


class _FailFastStub:
    """TFF's gRPC stub, except that a retryable error (the worker is unreachable) becomes
    `WorkerLost` instead of TFF retrying it for ever."""

    def __init__(self, stub, address: WorkerAddress):
        self._stub, self._address = stub, address

    @property
    def is_ready(self) -> bool:
        return self._stub.is_ready

    def __getattr__(self, name: str):
        call = getattr(self._stub, name)

        def fail_fast(request):
            try:
                return call(request)
            except executors_errors.RetryableError as error:
                if name.startswith("dispose"):
                    return None  # a lost worker's values went with it
                cause = error.__cause__ or (error.args[0] if error.args else error)
                detail = cause.code().name if hasattr(cause, "code") else type(cause).__name__
                raise WorkerLost(self._address, detail) from None

        return fail_fast


class Cluster:
    """The workers a computation may use, and TFF's execution context over those answering."""

    def __init__(self, addresses: Sequence[WorkerAddress], grpc_options: Sequence[tuple[str, int]]):
        self.addresses = tuple(addresses)
        self._options = grpc_options
        self._lock = threading.RLock()
        self._connections = {a: _Connection(a, grpc_options) for a in self.addresses}
        self._lost: set[WorkerAddress] = set()
        self._contexts: dict[tuple[WorkerAddress, ...], object] = {}
        self.context = _cluster_context(self)

    def connect(self, timeout: float = _CONNECT_TIMEOUT_S) -> None:
        """Wait for every worker to answer; ClusterError names those that do not."""
        deadline = time.monotonic() + timeout
        silent = [
            a
            for a, c in self._connections.items()
            if not c.answers(max(0.1, deadline - time.monotonic()))
        ]
        if silent:
            names = ", ".join(map(str, silent))
            raise ClusterError(
                f"no answer from TFF worker {names} after {timeout:.0f} s: is `fedtext worker "
                f"--port PORT` running there, and is the address reachable from here?"
            )

    @property
    def active(self) -> tuple[WorkerAddress, ...]:
        with self._lock:
            return tuple(a for a in self.addresses if a not in self._lost)

    def drop(self, address: WorkerAddress) -> tuple[WorkerAddress, ...]:
        """Leave a lost worker out of the next computations; returns those that remain."""
        with self._lock:
            if address not in self._lost:
                self._lost.add(address)
                self._contexts = {k: v for k, v in self._contexts.items() if address not in k}
                log.warning("TFF worker %s lost; %d remain", address, len(self.active))
            return self.active

    def _take_back_returned(self) -> None:
        for address in sorted(self._lost):
            # A fresh channel: the old one backs off for up to two minutes between tries.
            fresh = _Connection(address, self._options)
            if not fresh.answers(_PROBE_TIMEOUT_S):
                log.info("TFF worker %s still lost", address)
                fresh.close()
                continue
            self._connections.pop(address).close()
            self._connections[address] = fresh
            self._lost.discard(address)
            log.warning("TFF worker %s answers again; it is back in the rounds", address)

    def context_now(self):
        """TFF's mergeable context over the workers that answer now (built once per set)."""
        with self._lock:
            self._take_back_returned()
            if not self.active:
                self._wait_for_any()
            workers = self.active
            if workers not in self._contexts:
                self._contexts[workers] = self._build(workers)
            return self._contexts[workers]

    def whole_context_now(self):
        """TFF's plain context on the first worker answering, for what cannot be split."""
        with self._lock:
            self.context_now()
            key = ("whole", self.active[0])
            if key not in self._contexts:
                self._contexts[key] = self._build(self.active[:1], mergeable=False)
            return self._contexts[key]

    def _wait_for_any(self) -> None:
        deadline = time.monotonic() + _RETURN_TIMEOUT_S
        while time.monotonic() < deadline:
            self._take_back_returned()
            if self.active:
                return
            time.sleep(1.0)
        raise ClusterError(
            f"every TFF worker was lost ({', '.join(map(str, self.addresses))}) and none came "
            f"back within {_RETURN_TIMEOUT_S:.0f} s"
        )

    def _build(self, workers: tuple[WorkerAddress, ...], mergeable: bool = True):
        def executor_factory(stub):
            def executor_stack(cardinalities):
                cardinalities.setdefault(placements.CLIENTS, 0)
                executor = RemoteExecutor(stub)
                executor.set_cardinalities(cardinalities)
                return executor

            return python_executor_stacks.ResourceManagingExecutorFactory(executor_stack)

        transforms = dict(
            transform_args=tensorflow_computation.transform_args,
            transform_result=tensorflow_computation.transform_result,
        )
        # A fresh executor factory for every set: a worker that came back has forgotten the
        # executors made on it before.
        if not mergeable:
            return sync_execution_context.SyncExecutionContext(
                executor_fn=executor_factory(self._connections[workers[0]].stub),
                compiler_fn=compiler.desugar_and_transform_to_native,
                **transforms,
            )
        contexts = [
            async_execution_context.AsyncExecutionContext(
                executor_fn=executor_factory(self._connections[a].stub),
                compiler_fn=compiler.desugar_and_transform_to_native,
                **transforms,
            )
            for a in workers
        ]
        # Compiled by the caller: a MergeableCompForm is what this context runs.
        return mergeable_comp_execution_context.MergeableCompExecutionContext(
            contexts, **transforms
        )

    def close(self) -> None:
        with self._lock:
            for connection in self._connections.values():
                connection.close()
            self._contexts.clear()


def _cluster_context(cluster: Cluster):
    """The context TFF sees: each call goes to the workers answering at that moment, split at
    its aggregation; a computation with no single aggregation runs whole on one of them."""

    class ClusterContext(context_base.SyncContext):
        def __init__(self):
            self._forms: dict[object, object] = {}

        def invoke(self, comp, arg):
            if comp not in self._forms:
                try:
                    self._forms[comp] = mergeable_comp_compiler.compile_to_mergeable_comp_form(comp)
                except (ValueError, TypeError) as error:
                    log.info("%s runs on one worker: %s", comp, error)
                    self._forms[comp] = None
            form = self._forms[comp]
            if form is None:
                return cluster.whole_context_now().invoke(comp, arg)
            return cluster.context_now().invoke(form, arg)

    return ClusterContext()
