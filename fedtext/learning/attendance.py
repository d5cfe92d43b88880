"""Clients that drop out and clients that lag: which of a round's sampled clients never send
their update, and which run only part of their local steps. Seeded by the run, the round and
the client, so a run is repeatable and its record says who; what each round then sent comes
from the communication meter."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from fedtext.config import FederatedConfig
from fedtext.learning.communication import process_traffic
from fedtext.learning.records import RoundResult

_STREAM = 26  # a stream of the seed of its own, apart from the cohort's sampling
SKIPPED = "every sampled client dropped out; the round was skipped and the model is unchanged"


@dataclass(frozen=True)
class Attendance:
    """What became of one round's sampled clients."""

    round_num: int
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

    def record(self, process) -> dict:
        """The round's RoundResult fields on who took part and what they sent (in a round of
        the compiled `process`)."""
        down, up = process_traffic(process).round_bytes(len(self.sampled), len(self.arrived))
        return dict(bytes_down=down, bytes_up=up, dropped=self.dropped, lagged=self.lagged)


def _draws(config: FederatedConfig, round_num: int, client_id: str) -> tuple[bool, int | None]:
    """Whether a client drops out of a round, and the local steps it runs if it lags (None: all
    of them); seeded by the run, the round and the client, whoever else was sampled."""
    rng = np.random.default_rng([config.seed, round_num, _STREAM, *client_id.encode()])
    drops = bool(rng.random() < config.dropout_chance)
    lags = bool(rng.random() < config.straggler_chance) and config.batches_per_client > 1
    steps = int(rng.integers(1, max(config.batches_per_client, 2)))
    return drops, steps if lags and not drops else None


def local_steps(config: FederatedConfig, round_num: int, client_id: str) -> int:
    """The local steps a client runs in a round: all of them, unless it lags."""
    if not config.straggler_chance:
        return config.batches_per_client
    return _draws(config, round_num, client_id)[1] or config.batches_per_client


def attendance(config: FederatedConfig, round_num: int, sampled: Sequence[str]) -> Attendance:
    """Draws, for each sampled client of `round_num`, whether it drops out (`dropout_chance`)
    and, if not, whether it lags (`straggler_chance`): a straggler runs a whole number of local
    steps drawn uniformly from 1 to one fewer than the round's."""
    sampled = tuple(sampled)
    if not config.dropout_chance and not config.straggler_chance:
        return Attendance(round_num, sampled)
    draws = {cid: _draws(config, round_num, cid) for cid in sampled}
    dropped = tuple(cid for cid in sampled if draws[cid][0])
    lagging = {cid: steps for cid, (_, steps) in draws.items() if steps is not None}
    return Attendance(round_num, sampled, dropped, lagging)


def skip_round(trainer, fate: Attendance, process, evaluate: bool) -> RoundResult:
    """Records a round every sampled client dropped out of on `trainer` (a FederatedTrainer):
    the model stays, the model went out to all, and a notice says so."""
    trainer.notices.append(f"round {fate.round_num}: {SKIPPED}")
    loss = accuracy = math.nan
    if evaluate:  # the run's last round is always evaluated, even unchanged
        loss, accuracy = trainer.evaluate(trainer.weights)
    result = RoundResult(
        fate.round_num, loss, accuracy, client_ids=fate.sampled, **fate.record(process)
    )
    trainer.history.append(result)
    return result
