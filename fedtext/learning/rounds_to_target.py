"""The paper's experiment on our clients: FedSGD against FedAvg with 1, 5 and 20 local steps, on
the same clients from the same base model, each run until its held-out accuracy reaches the same
target; the rounds and the bytes each needed (McMahan et al. 2017, "Communication-Efficient
Learning of Deep Networks from Decentralized Data")."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from fedtext.config import FederatedConfig
from fedtext.learning.communication import human_bytes
from fedtext.learning.records import RoundResult
from fedtext.learning.training import FederatedTrainer

PAPER_STEPS = (0, 1, 5, 20)  # local steps per round in the comparison; 0 is FedSGD
# McMahan et al.'s Shakespeare LSTM, non-IID, as quoted in issue 26: rounds to 54% accuracy.
PAPER_ROUNDS = {"FedSGD": 3906, "FedAvg": 41}


@dataclass(frozen=True)
class Finish:
    """One contender's run to the target."""

    label: str
    local_steps: int  # 0: FedSGD, which takes none
    rounds: int | None  # rounds to reach the target; None: not within the rounds run
    rounds_run: int
    bytes_down: int  # sent until the target was reached (or in all the rounds run)
    bytes_up: int
    cpu_seconds: float
    best_accuracy: float
    history: tuple[RoundResult, ...]


def contenders(config: FederatedConfig, steps: Sequence[int] = PAPER_STEPS) -> list[tuple]:
    """(label, local steps, config) for each of `steps`: 0 is FedSGD (one gradient over the
    config's batches), n FedAvg with n local steps; everything else as `config`."""
    races = []
    for n in steps:
        if n == 0:
            sgd = dataclasses.replace(config, algorithm="fedsgd", client_optimizer="sgd")
            races.append(("FedSGD", 0, sgd))
        else:
            plain = dataclasses.replace(config, algorithm="fedavg", batches_per_client=n)
            races.append((f"FedAvg, {n} local step{'s' if n > 1 else ''}", n, plain))
    return races


def run_to_target(
    label: str,
    steps: int,
    config: FederatedConfig,
    data: tuple,
    base_dir: str | Path | None,
    target: float,
    on_round: Callable[[str, RoundResult], None] | None = None,
) -> Finish:
    """Rounds of `config` (every one evaluated) until held-out accuracy reaches `target` or the
    config's rounds run out."""
    config = dataclasses.replace(config, eval_every=1, rounds_per_call=1)
    trainer = FederatedTrainer(config, *data, base_dir)
    reached = None
    for result in trainer.rounds():
        if on_round:
            on_round(label, result)
        if result.round_num and result.eval_accuracy >= target:
            reached = result.round_num
            break  # the trainer keeps what it has; nothing more is needed of it
    history = tuple(trainer.history)
    return Finish(
        label,
        steps,
        reached,
        len(history) - 1,
        sum(r.bytes_down for r in history),
        sum(r.bytes_up for r in history),
        sum(r.cpu_seconds for r in history[1:]),
        max(r.eval_accuracy for r in history if not math.isnan(r.eval_accuracy)),
        history,
    )


def table(finishes: Sequence[Finish], base_accuracy: float, target: float) -> str:
    """The comparison as a Markdown table: rounds, bytes and CPU time to the target."""
    fedsgd = next((f for f in finishes if f.local_steps == 0), None)
    lines = [
        f"Target: held-out accuracy {target:.3f} (the base model's {base_accuracy:.3f} "
        f"+ {100 * (target - base_accuracy):.1f} points)",
        "",
        "| algorithm | rounds to target | bytes up | bytes down | CPU s | best accuracy "
        "| FedSGD's rounds / these |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for f in finishes:
        rounds = str(f.rounds) if f.rounds else f"not in {f.rounds_run}"
        ratio = ""
        if fedsgd and f is not fedsgd and f.rounds:
            sgd_rounds = fedsgd.rounds or fedsgd.rounds_run
            ratio = f"{'>= ' if not fedsgd.rounds else ''}{sgd_rounds / f.rounds:.1f}x"
        lines.append(
            f"| {f.label} | {rounds} | {human_bytes(f.bytes_up)} | {human_bytes(f.bytes_down)} "
            f"| {f.cpu_seconds:.0f} | {f.best_accuracy:.3f} | {ratio} |"
        )
    return "\n".join(lines)
