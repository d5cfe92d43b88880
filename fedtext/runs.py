"""Runs: what each round did, and finished runs on disk (metrics and fine-tuned weights under
unguessable ids, pruned by age and total size so a long-lived server's disk cannot fill up).
No TensorFlow here: the page reads runs while TensorFlow still loads."""

from __future__ import annotations

import json
import math
import os
import re
import secrets
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, astuple, dataclass, field, fields
from pathlib import Path
from types import MappingProxyType

import numpy as np

from fedtext.config import FederatedConfig, ModelConfig
from fedtext.weights import WeightsError, load_config, load_weights_arrays, save_arrays

_RUN_ID = re.compile(r"[A-Za-z0-9_-]{20,40}")
MAX_AGE_DAYS = 7.0  # a classroom's runs outlive the lesson, not the term
MAX_TOTAL_MB = 500.0  # about 60 runs of the 8 MB full-size model
PERSONAL_DIR = "personal"  # a run's models per character, one directory each


def data_dir() -> Path:
    """Where runs live: $FEDTEXT_DATA, else the cache directory."""
    from fedtext.data import cache_dir

    return Path(os.environ.get("FEDTEXT_DATA", cache_dir()))


def new_run_id() -> str:
    return secrets.token_urlsafe(16)  # 128 random bits: cannot be guessed or enumerated


def is_run_id(text: str) -> bool:
    return bool(_RUN_ID.fullmatch(text or ""))


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
    client_ids: tuple[str, ...] = ()  # the clients that took part this round


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


def history_csv(history: Sequence[RoundResult]) -> str:
    """Per-round metrics as CSV text (round 0 is the base model)."""
    lines = [
        "round,eval_loss,eval_accuracy,train_loss,train_accuracy,num_examples,seconds,"
        "cpu_seconds,clients"
    ]
    for r in history:
        fmt = lambda v: "" if v is None else f"{v:.6f}"  # noqa: E731
        lines.append(
            f"{r.round_num},{r.eval_loss:.6f},{r.eval_accuracy:.6f},{fmt(r.train_loss)},"
            f"{fmt(r.train_accuracy)},{r.num_examples},{r.seconds:.3f},{r.cpu_seconds:.3f},"
            f"{' '.join(r.client_ids)}"
        )
    return "\n".join(lines) + "\n"


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
    lines = [",".join("round" if n == "round_num" else n for n in names)]
    for f in figures:
        cells = []
        for value in astuple(f):
            if isinstance(value, float):
                cells.append("" if math.isnan(value) else f"{value:.6g}")
            else:
                cells.append(str(value))
        lines.append(",".join(cells))
    return "\n".join(lines) + "\n"


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


@dataclass(frozen=True)
class SavedRun:
    run_id: str
    config: FederatedConfig
    history: list[RoundResult]
    weights: list[np.ndarray]
    model_config: ModelConfig
    created: float
    message: str = ""  # why the run ended early, if it did
    baseline: list[RoundResult] = field(default_factory=list)  # centralised, if it was run
    clients: list[ClientFigures] = field(default_factory=list)  # per client, where measured
    personal: dict[str, PersonalGain] = field(default_factory=dict)  # models per character
    gains: list[PersonalGain] = field(default_factory=list)  # every character's, by TFF


class RunStore:
    """One directory per run: weights.npz, model.json, metrics.csv and run.json."""

    def __init__(self, root: Path | None = None):
        self.root = (root or data_dir()) / "runs"

    def path(self, run_id: str) -> Path:
        if not is_run_id(run_id):
            raise KeyError("not a run id")
        return self.root / run_id

    def save(
        self,
        run_id: str,
        config: FederatedConfig,
        history: list[RoundResult],
        weights: list[np.ndarray],
        model_config: ModelConfig,
        message: str = "",
        baseline: Sequence[RoundResult] = (),
        clients: Sequence[ClientFigures] = (),
        personal: Mapping[str, PersonalGain] = MappingProxyType({}),
        gains: Sequence[PersonalGain] = (),
    ) -> Path:
        final = self.path(run_id)
        tmp = self.root / f".{run_id}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        save_arrays(weights, model_config, tmp)
        (tmp / "metrics.csv").write_text(history_csv(history))
        if clients:
            (tmp / "clients.csv").write_text(clients_csv(clients))
        record = {
            "config": asdict(config),
            "history": [asdict(r) for r in history],
            "created": time.time(),
            "message": message,
            "baseline": [asdict(r) for r in baseline],
            "clients": [asdict(f) for f in clients],
            "personal": [asdict(p) for p in personal.values()],
            "gains": [asdict(g) for g in gains],
        }
        (tmp / "run.json").write_text(json.dumps(record))
        if (final / PERSONAL_DIR).exists():  # the characters' models, saved as they were made
            (final / PERSONAL_DIR).rename(tmp / PERSONAL_DIR)
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)  # readers see a whole run or none
        self.prune()
        return final

    def load(self, run_id: str) -> SavedRun:
        """The run, or KeyError for an unknown id and WeightsError for a damaged one."""
        directory = self.path(run_id)
        if not (directory / "run.json").exists():
            raise KeyError(run_id)
        try:
            record = json.loads((directory / "run.json").read_text())
            config = FederatedConfig(
                **{**record["config"], "client_ids": tuple(record["config"]["client_ids"])}
            )
            history, baseline = (
                [RoundResult(**{**r, "client_ids": tuple(r["client_ids"])}) for r in points]
                for points in (record["history"], record.get("baseline", []))
            )
            clients = [ClientFigures(**f) for f in record.get("clients", [])]
            personal = {p["client_id"]: PersonalGain(**p) for p in record.get("personal", [])}
            gains = [PersonalGain(**g) for g in record.get("gains", [])]
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise WeightsError(f"run {run_id} is damaged ({type(error).__name__})") from None
        return SavedRun(
            run_id,
            config,
            history,
            load_weights_arrays(directory),
            load_config(directory),
            record.get("created", 0.0),
            record.get("message", ""),
            baseline,
            clients,
            personal,
            gains,
        )

    def personal_dir(self, run_id: str, client_id: str) -> Path:
        """Where a run's model for one character lives (`fedtext generate --model` reads it)."""
        if not re.fullmatch(r"[A-Z0-9_]+", client_id):
            raise KeyError("not a client id")
        return self.path(run_id) / PERSONAL_DIR / client_id

    def save_personal(
        self, run_id: str, client_id: str, weights: list[np.ndarray], model_config: ModelConfig
    ) -> Path:
        return save_arrays(weights, model_config, self.personal_dir(run_id, client_id))

    def prune(
        self, max_age_days: float = MAX_AGE_DAYS, max_total_mb: float = MAX_TOTAL_MB
    ) -> list[str]:
        """Delete runs older than max_age_days, then the oldest until under max_total_mb."""
        if not self.root.exists():
            return []
        runs = []
        for directory in self.root.iterdir():
            if directory.is_dir() and is_run_id(directory.name):
                size = sum(f.stat().st_size for f in directory.rglob("*") if f.is_file())
                runs.append((directory.stat().st_mtime, size, directory))
        runs.sort()
        removed, now = [], time.time()
        total = sum(size for _, size, _ in runs)
        for mtime, size, directory in runs:
            if now - mtime > max_age_days * 86400 or total > max_total_mb * 1e6:
                shutil.rmtree(directory, ignore_errors=True)
                total -= size
                removed.append(directory.name)
        return removed
