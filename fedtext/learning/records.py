"""What a run did: each round's figures, each client's, a character's own model against the global
one, the comparison with centralised training, and their CSV forms. Plain Python."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields

import numpy as np


@dataclass(frozen=True)
class RoundResult:
    """What one round did; round 0 is the base model before any training."""

    round_num: int
    eval_loss: float  # cross-entropy per character on the chosen clients' held-out speeches
    eval_accuracy: float
    train_loss: float | None = None  # averaged over every character the clients trained on
    train_accuracy: float | None = None
    num_examples: int = 0  # sequences of seq_length characters trained on this round
    seconds: float = 0.0  # wall time of the round, evaluation included
    # CPU time of the round's training, this process and the TFF worker together; evaluation
    # is left out (it measures the model, it does not train it: 50 CPU s for the whole federation)
    cpu_seconds: float = 0.0
    client_ids: tuple[str, ...] = ()  # the clients sampled for this round
    # Bytes the round moved (fedtext.learning.communication): the model to every sampled client,
    # and the updates of those that arrived, as TFF encodes them.
    bytes_down: int = 0
    bytes_up: int = 0
    dropped: tuple[str, ...] = ()  # sampled, sent the model, never sent their update
    lagged: tuple[str, ...] = ()  # ran only part of their local steps

    def __post_init__(self):
        for name in ("client_ids", "dropped", "lagged"):  # lists when read back from JSON
            object.__setattr__(self, name, tuple(getattr(self, name)))


@dataclass(frozen=True)
class Comparison:
    """Federated against centralised learning at equal CPU time."""

    cpu_seconds: float  # what the federated rounds took
    federated_gain: float  # held-out accuracy over the base model, in points
    centralised_gain: float  # the same, centralised, at the same CPU time

    @property
    def ratio(self) -> float:
        """Federated gain / centralised gain: 1 would be learning as if the text were pooled."""
        return self.federated_gain / self.centralised_gain if self.centralised_gain > 0 else 0.0

    def summary(self) -> str:
        return (
            f"at {self.cpu_seconds:.0f} CPU s: federated {self.federated_gain:+.1f} points, "
            f"centralised {self.centralised_gain:+.1f} points (ratio {self.ratio:.2f})"
        )


def compare(federated: Sequence[RoundResult], centralised: Sequence[RoundResult]) -> Comparison:
    """Gains of the last evaluated round and of centralised training at the same CPU time
    (interpolated between its points)."""
    evaluated = [r for r in federated if not math.isnan(r.eval_accuracy)]
    budget = sum(r.cpu_seconds for r in federated[1:])
    spent = np.cumsum([0.0, *(r.cpu_seconds for r in centralised[1:])])
    accuracy = np.interp(budget, spent, [r.eval_accuracy for r in centralised])
    return Comparison(
        budget,
        100 * (evaluated[-1].eval_accuracy - federated[0].eval_accuracy),
        100 * (float(accuracy) - centralised[0].eval_accuracy),
    )


# metrics.csv's columns and the RoundResult field each one holds
HISTORY_COLUMNS = {
    "round": "round_num",
    "eval_loss": "eval_loss",
    "eval_accuracy": "eval_accuracy",
    "train_loss": "train_loss",
    "train_accuracy": "train_accuracy",
    "num_examples": "num_examples",
    "seconds": "seconds",
    "cpu_seconds": "cpu_seconds",
    "clients": "client_ids",
    "bytes_down": "bytes_down",
    "bytes_up": "bytes_up",
    "dropped": "dropped",
    "lagged": "lagged",
}


def _cell(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.12g}"  # float32 figures in full, without float64's last-digit noise
    if isinstance(value, tuple | list):
        return " ".join(map(str, value))
    return str(value)


def records_csv(records: Iterable, columns: Mapping[str, str]) -> str:
    """CSV text of `records`, one row each: a column per `columns` item (header -> attribute)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for record in records:
        writer.writerow(_cell(getattr(record, name)) for name in columns.values())
    return out.getvalue()


def history_csv(history: Sequence[RoundResult]) -> str:
    """Per-round metrics as CSV text (round 0 is the base model)."""
    return records_csv(history, HISTORY_COLUMNS)


@dataclass(frozen=True)
class ClientFigures:
    """What one client did in one round, as TFF computed it on that client."""

    round_num: int
    client_id: str
    share: float  # its update weight / the sum of the cohort's: its say in the average
    update_norm: float  # global L2 norm of its model delta (0: it did not move)
    cosine: float  # between its delta and the averaged delta; 0 when either is zero
    loss_before: float  # nats per character on this round's own batches, global model (NaN: none)
    loss_after: float  # the same after its local training
    weight: float  # its raw update weight: sequences trained on ("weighted"), or 1 ("uniform")


def clients_csv(figures: Sequence[ClientFigures]) -> str:
    """Per-client, per-round figures as CSV text (`clients.csv` beside `metrics.csv`)."""
    names = [f.name for f in fields(ClientFigures)]
    return records_csv(figures, {"round" if n == "round_num" else n: n for n in names})


@dataclass(frozen=True)
class PersonalGain:
    """A character's own model against the global one, on its held-out speeches."""

    client_id: str
    global_loss: float  # nats per character
    global_accuracy: float
    personal_loss: float
    personal_accuracy: float
    steps: int = 0  # local SGD steps from the global model

    @property
    def gain(self) -> float:
        """Held-out accuracy gained by personalising, in points."""
        return 100 * (self.personal_accuracy - self.global_accuracy)


def gains_csv(gains: Sequence[PersonalGain]) -> str:
    """Every character's own model against the global one, as CSV text."""
    names = ("client_id", "global_loss", "global_accuracy", "personal_loss", "personal_accuracy")
    return records_csv(gains, {**{n: n for n in names}, "gain": "gain"})
