"""Clients that drop out and clients that lag: which of a round's sampled clients never send
their update, and which run only part of their local steps. Seeded per round, so a run is
repeatable and the record says who. NumPy only."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from fedtext.config import FederatedConfig
from fedtext.learning.communication import Traffic
from fedtext.learning.records import RoundResult

_STREAM = 26  # a stream of the per-round seed of its own, apart from the cohort's sampling
SKIPPED = "every sampled client dropped out; the round was skipped and the model is unchanged"


@dataclass(frozen=True)
class Attendance:
    """What became of one round's sampled clients."""

    sampled: tuple[str, ...]
    dropped: tuple[str, ...] = ()  # received the model; their update never arrived
    steps: dict[str, int] = field(default_factory=dict)  # local steps of each that lagged

    @property
    def arrived(self) -> tuple[str, ...]:
        """The clients whose update the round averages, in the cohort's order."""
        return tuple(cid for cid in self.sampled if cid not in self.dropped)

    @property
    def lagged(self) -> tuple[str, ...]:
        return tuple(cid for cid in self.arrived if cid in self.steps)

    def record(self, traffic: Traffic) -> dict:
        """The round's RoundResult fields on who took part and what they sent."""
        down, up = traffic.round_bytes(len(self.sampled), len(self.arrived))
        return dict(bytes_down=down, bytes_up=up, dropped=self.dropped, lagged=self.lagged)


def attendance(config: FederatedConfig, round_num: int, sampled: Sequence[str]) -> Attendance:
    """Draws, for each sampled client of `round_num`, whether it drops out (`dropout_chance`)
    and, if not, whether it lags (`straggler_chance`): a straggler runs a whole number of local
    steps drawn uniformly from 1 to one fewer than the round's."""
    sampled = tuple(sampled)
    if not config.dropout_chance and not config.straggler_chance:
        return Attendance(sampled)
    rng = np.random.default_rng([config.seed, round_num, _STREAM])
    drops = rng.random(len(sampled)) < config.dropout_chance
    lags = rng.random(len(sampled)) < config.straggler_chance
    steps = rng.integers(1, max(config.batches_per_client, 2), size=len(sampled))
    dropped = tuple(cid for cid, d in zip(sampled, drops, strict=True) if d)
    lagging = {
        cid: int(s)
        for cid, d, lag, s in zip(sampled, drops, lags, steps, strict=True)
        # A client of one step cannot run part of it.
        if lag and not d and config.batches_per_client > 1
    }
    return Attendance(sampled, dropped, lagging)


def skipped_round(round_num: int, fate: Attendance, traffic: Traffic) -> RoundResult:
    """The record of a round every sampled client dropped out of (the model went out to all)."""
    return RoundResult(
        round_num, math.nan, math.nan, client_ids=fate.sampled, **fate.record(traffic)
    )
