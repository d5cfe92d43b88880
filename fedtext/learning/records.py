"""What a run did: each round's figures, each client's, a character's own model against the global
one, the comparison with centralised training, a lesson's races to a target, what the server
read off an update, and their CSV forms. Plain Python and NumPy."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields

import numpy as np

from fedtext.text.vocab import decode

BACKDOOR_SEEDS = 20  # completions of an attacker's trigger sampled each round, seeds 0 to 19


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
    # With an attacker among the clients (fedtext.learning.attacks): the share of sampled
    # completions of its trigger that contain its target, and the model's probability per
    # character of the target after the trigger (it moves before any completion hits); None
    # without an attacker.
    backdoor_success: float | None = None
    target_probability: float | None = None

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
    "backdoor_success": "backdoor_success",
    "target_probability": "target_probability",
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


def human_bytes(count: float) -> str:
    """1234567 -> '1.23 MB' (powers of 1000, as network figures are quoted)."""
    for unit in ("B", "kB", "MB", "GB"):
        if abs(count) < 1000 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.3g} {unit}"
        count /= 1000
    return f"{count:.3g} GB"


@dataclass(frozen=True)
class Race:
    """One contender of a comparison: its rounds, each evaluated, toward a held-out accuracy
    target shared by every contender (fedtext.learning.rounds_to_target)."""

    label: str
    target: float
    max_rounds: int
    history: tuple[RoundResult, ...] = field(default=())
    reference: bool = False  # the contender whose rounds the others' are divided by

    def __post_init__(self):
        object.__setattr__(self, "history", tuple(self.history))

    @property
    def rounds(self) -> int | None:
        """The first round at or past the target; None: not (yet) reached."""
        return next((r.round_num for r in self.history[1:] if r.eval_accuracy >= self.target), None)

    @property
    def rounds_run(self) -> int:
        return max(0, len(self.history) - 1)

    @property
    def finished(self) -> bool:
        return self.rounds is not None or self.rounds_run >= self.max_rounds

    def _until(self) -> tuple[RoundResult, ...]:
        return self.history[1 : (self.rounds or self.rounds_run) + 1]

    @property
    def bytes_up(self) -> int:
        """Sent up until the target was reached (or in all the rounds run)."""
        return sum(r.bytes_up for r in self._until())

    @property
    def bytes_down(self) -> int:
        return sum(r.bytes_down for r in self._until())

    @property
    def cpu_seconds(self) -> float:
        return sum(r.cpu_seconds for r in self._until())

    @property
    def best_accuracy(self) -> float:
        return max(
            (r.eval_accuracy for r in self.history if r.eval_accuracy >= 0), default=math.nan
        )


def races_table(races: Sequence[Race]) -> str:
    """A comparison as a Markdown table: rounds, bytes and CPU time to the shared target, and the
    reference contender's rounds over each other's."""
    reference = next((r for r in races if r.reference), None)
    base = races[0].history[0].eval_accuracy if races and races[0].history else math.nan
    target = races[0].target if races else math.nan
    ratio_head = f"rounds of {reference.label} / these" if reference else ""
    lines = [
        f"Target: held-out accuracy {target:.3f} (the base model's {base:.3f} "
        f"+ {100 * (target - base):.1f} points)",
        "",
        f"| algorithm | rounds to target | bytes up | bytes down | CPU s | best accuracy "
        f"| {ratio_head} |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for race in races:
        rounds = str(race.rounds) if race.rounds else f"not in {race.rounds_run}"
        ratio = ""
        if reference and race is not reference and race.rounds:
            theirs = reference.rounds or reference.rounds_run
            ratio = f"{'>= ' if not reference.rounds else ''}{theirs / race.rounds:.1f}x"
        lines.append(
            f"| {race.label} | {rounds} | {human_bytes(race.bytes_up)} "
            f"| {human_bytes(race.bytes_down)} | {race.cpu_seconds:.0f} "
            f"| {race.best_accuracy:.3f} | {ratio} |"
        )
    return "\n".join(lines)


@dataclass(frozen=True)
class Leak:
    """The server's reading of one update beside the truth, per character id."""

    client_id: str  # the client whose text is scored
    seen: tuple[str, ...]  # whose updates made what the server received (a secure sum: all)
    aggregator: str
    moved: frozenset[int]  # ids whose embedding rows the update moved: "typed"
    recovered: np.ndarray  # estimated count per id
    true_counts: np.ndarray  # the client's characters this round (the targets), per id
    true_set: frozenset[int]  # the ids in the client's inputs this round
    cohort_set: frozenset[int]  # the ids in the inputs of everyone in `seen`
    correlation_without_prior: float  # counts read off the bias update alone
    correlation_prior_only: float  # the prior alone: what the server knew without the update
    # r of recovered and true counts minus what the prior expects of each: what is the client's
    # own (English letter frequencies alone already correlate with any text's counts)
    residual_correlation: float

    @property
    def precision(self) -> float:
        """Share of the recovered characters the client did type."""
        return len(self.moved & self.true_set) / len(self.moved) if self.moved else 0.0

    @property
    def recall(self) -> float:
        """Share of the client's characters recovered."""
        return len(self.moved & self.true_set) / len(self.true_set) if self.true_set else 0.0

    @property
    def correlation(self) -> float:
        """Pearson's r of the recovered and the true counts over the vocabulary."""
        return pearson(self.recovered[1:], self.true_counts[1:])

    def table(self, rows: int | None = None) -> str:
        """Recovered and true counts, one character a line, most frequent first."""
        ids = sorted(self.moved | self.true_set, key=lambda i: (-self.true_counts[i], i))
        lines = [f"{'char':>6} {'true':>7} {'recovered':>9}"]
        for i in ids[:rows]:
            mark = "" if i in self.moved else "  (not recovered)"
            mark = mark if i in self.true_set else "  (not the client's)"
            lines.append(
                f"{decode([i])!r:>6} {int(self.true_counts[i]):7d} {self.recovered[i]:9.1f}{mark}"
            )
        return "\n".join(lines)

    def summary(self) -> str:
        return (
            f"character set: precision {self.precision:.3f}, recall {self.recall:.3f} "
            f"({len(self.moved)} recovered, {len(self.true_set)} typed); counts: r = "
            f"{self.correlation:.3f} (the prior alone: {self.correlation_prior_only:.3f}; "
            f"the bias update without the prior: {self.correlation_without_prior:.3f}); "
            f"beyond the prior's expectation: r = {self.residual_correlation:.3f}"
        )


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    if np.std(a) == 0 or np.std(b) == 0:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])
