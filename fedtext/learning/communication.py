"""The communication meter: the bytes a round moves between the server and each client, read from
the types of the tensors TFF's round computation moves.

Nothing in TFF 0.87 counts bytes, so this is written by hand from TFF's own type signatures: it
walks the round's computation (`process.next`, traced into TFF's building blocks once per
compiled process) and adds up

- down, per client: the member type of every `federated_broadcast` (the model, and with
  compression the encoder's parameters);
- up, per client: the CLIENTS-placed operand of every intrinsic that brings clients' values to
  the server (`federated_aggregate`, `federated_sum`, `federated_mean`, ...): the model update
  as its aggregator encodes it (8-bit quantized tensors are int32 words holding 4 values each),
  its averaging weight and the training metrics' sums; and any CLIENTS-placed part of the
  round's result (the per-client figures of `fedtext.learning.contributions`).

A tensor of shape S and dtype D counts prod(S) x D's item size. Those are the tensors a
deployment would send; TFF's simulation runs them in one worker process. Plain Python on top of
TFF's types: no TensorFlow is run.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import tensorflow_federated as tff
from tensorflow_federated.python.core.impl.compiler import building_blocks

from fedtext.learning.records import RoundResult, human_bytes

# The intrinsic moving a server value to every client.
DOWN_INTRINSICS = ("federated_broadcast",)


@dataclass(frozen=True)
class Traffic:
    """What one round of a compiled process moves for each client taking part, in bytes."""

    down: int  # server -> one client
    up: int  # one client -> server

    def round_bytes(self, sampled: int, arrived: int) -> tuple[int, int]:
        """(bytes down, bytes up) of a round: every sampled client received the model; only
        the clients whose update arrived sent anything."""
        return self.down * sampled, self.up * arrived


def type_bytes(value_type) -> int:
    """Bytes of a TFF type's tensors: a federated value's member, a struct's fields summed."""
    if isinstance(value_type, tff.FederatedType):
        return type_bytes(value_type.member)
    if isinstance(value_type, tff.StructType):
        return sum(type_bytes(v) for v in value_type.children())
    if isinstance(value_type, tff.TensorType):
        if value_type.shape is None or any(d is None for d in value_type.shape):
            raise ValueError(f"cannot count the bytes of {value_type}: its shape is not known")
        return int(np.prod(value_type.shape, dtype=np.int64)) * np.dtype(value_type.dtype).itemsize
    raise ValueError(f"cannot count the bytes of {value_type}")


def _placed(value_type, placement) -> list:
    """The parts of a (possibly struct) type placed at `placement`."""
    if isinstance(value_type, tff.FederatedType):
        return [value_type] if value_type.placement is placement else []
    if isinstance(value_type, tff.StructType):
        return [p for child in value_type.children() for p in _placed(child, placement)]
    return []


def intrinsics(computation) -> list[tuple[str, object]]:
    """(uri, type signature) of every intrinsic in a TFF computation's building blocks."""
    found, stack = [], [computation.to_building_block()]
    while stack:
        block = stack.pop()
        if isinstance(block, building_blocks.Intrinsic):
            found.append((block.uri, block.type_signature))
        stack.extend(block.children())
    return found


def computation_traffic(computation) -> Traffic:
    """Bytes per client that one call of a federated computation moves (see the module)."""
    down = up = 0
    for uri, signature in intrinsics(computation):
        if uri in DOWN_INTRINSICS:
            down += type_bytes(signature.result)
        elif _placed(signature.result, tff.SERVER) and signature.parameter is not None:
            up += sum(type_bytes(t) for t in _placed(signature.parameter, tff.CLIENTS))
    up += sum(type_bytes(t) for t in _placed(computation.type_signature.result, tff.CLIENTS))
    return Traffic(down=down, up=up)


@functools.lru_cache(maxsize=16)
def process_traffic(process) -> Traffic:
    """Bytes per client of one round of a learning process (cached per compiled process); a
    wrapper around one (a test's) names it in `__wrapped__`, as functools.wraps does."""
    return computation_traffic(inspect.unwrap(process).next)


def running_totals(history: Sequence[RoundResult]) -> list[tuple[int, int]]:
    """(bytes down, bytes up) sent so far after each round of a run."""
    down = up = 0
    totals = []
    for r in history:
        down, up = down + r.bytes_down, up + r.bytes_up
        totals.append((down, up))
    return totals


def round_line(result: RoundResult, totals: Iterable[int] | None = None) -> str:
    """'down 2 x 16.2 MB, up 2 x 16.2 MB (so far ...)' and who dropped out or lagged."""
    sampled = len(result.client_ids)
    arrived = sampled - len(result.dropped)
    per_down = result.bytes_down / sampled if sampled else 0
    per_up = result.bytes_up / arrived if arrived else 0
    line = f"down {sampled} x {human_bytes(per_down)}, up {arrived} x {human_bytes(per_up)}"
    if totals is not None:
        total_down, total_up = totals
        line += f" (so far {human_bytes(total_down)} down, {human_bytes(total_up)} up)"
    for what, ids in (("dropped out", result.dropped), ("lagged", result.lagged)):
        if ids:
            line += f"; {what}: {', '.join(ids)}"
    return line
