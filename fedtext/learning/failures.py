"""Why a round failed: a lost TFF worker (resumable: the same round can run again on a new
one), or anything else (a fault in the code, a computation TFF refuses), which would fail again."""

from __future__ import annotations

import grpc
from tensorflow_federated.python.core.impl.executors.executors_errors import RetryableError

from fedtext.distribution import runtime
from fedtext.distribution.runtime import WorkerError

# gRPC's codes for a worker that went away, as against one that refused the computation.
_UNREACHABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)


class RoundFailed(RuntimeError):
    """A round failed for a reason other than a lost TFF worker: running it again fails again.
    The original error is the cause (`__cause__`), with its traceback."""


def worker_lost(error: BaseException, losses_before: int) -> bool:
    """Whether `error`, raised by a call to TFF, means the TFF worker was lost: fedtext's own
    worker errors, this machine's worker dying or replaced since `losses_before`
    (`runtime.worker_losses()` before the call), or gRPC saying the worker is unreachable."""
    if runtime.worker_losses() > losses_before:
        return True
    seen = error
    while seen is not None:
        if isinstance(seen, (WorkerError, RetryableError)):
            return True
        code = getattr(seen, "code", None)
        if isinstance(seen, grpc.RpcError) and callable(code) and code() in _UNREACHABLE:
            return True
        seen = seen.__cause__ or seen.__context__
    return False
