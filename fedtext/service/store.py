"""Finished runs on disk: metrics and fine-tuned weights under unguessable ids, pruned by age and
total size so a long-lived service's disk cannot fill up. No TensorFlow here: the page reads runs
while TensorFlow still loads."""

from __future__ import annotations

import functools
import json
import os
import re
import secrets
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from fedtext.config import FederatedConfig, ModelConfig
from fedtext.learning.records import (
    ClientFigures,
    Leak,
    PersonalGain,
    Race,
    RoundResult,
    clients_csv,
    history_csv,
)
from fedtext.model.weights import (
    KERAS_FILE,
    WeightsError,
    fingerprint,
    load_config,
    load_weights_arrays,
    save_arrays,
)
from fedtext.service.followers import run_key
from fedtext.text.plays import cache_dir

_RUN_ID = re.compile(r"[A-Za-z0-9_-]{20,40}")
MAX_AGE_DAYS = 7.0  # a classroom's runs outlive the lesson, not the term
MAX_TOTAL_MB = 500.0  # about 60 runs of the 8 MB full-size model
PERSONAL_DIR = "personal"  # a run's models per character, one directory each


def _plain(value):
    """JSON for what json cannot write itself: a Leak's sets and arrays."""
    if isinstance(value, frozenset | set):
        return sorted(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot store a {type(value).__name__}")


def _round(record: dict) -> RoundResult:
    return RoundResult(**record)  # its tuples come back as lists; RoundResult makes them tuples


def _leak(record: dict) -> Leak:
    sets = {name: frozenset(record[name]) for name in ("moved", "true_set", "cohort_set")}
    arrays = {name: np.array(record[name]) for name in ("recovered", "true_counts")}
    return Leak(**{**record, **sets, **arrays, "seen": tuple(record["seen"])})


def data_dir() -> Path:
    """Where runs live: $FEDTEXT_DATA, else the cache directory."""
    return Path(os.environ.get("FEDTEXT_DATA", cache_dir()))


def new_run_id() -> str:
    return secrets.token_urlsafe(16)  # 128 random bits: cannot be guessed or enumerated


def is_run_id(text: str) -> bool:
    return bool(_RUN_ID.fullmatch(text or ""))


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
    races: list[Race] = field(default_factory=list)  # the lesson's comparison, if it was run
    leaks: dict[str, Leak] = field(default_factory=dict)  # updates the server read, by client


@dataclass(frozen=True)
class RunExtras:
    """What visitors asked for after a run's rounds (fedtext.service.extras), stored with it."""

    baseline: Sequence[RoundResult] = ()
    clients: Sequence[ClientFigures] = ()
    personal: Mapping[str, PersonalGain] = field(default_factory=dict)
    gains: Sequence[PersonalGain] = ()
    races: Sequence[Race] = ()
    leaks: Mapping[str, Leak] = field(default_factory=dict)


def stored_key(config: FederatedConfig, base: str) -> str:
    """What makes two stored runs the same: their settings, clients and seed, and their base
    model's fingerprint."""
    return f"{run_key(config)}:{base}"


class RunStore:
    """One directory per run: weights.npz, model.json, metrics.csv and run.json."""

    def __init__(self, root: Path | None = None, base_dir: Path | None = None):
        self.root = (root or data_dir()) / "runs"
        # The base model the runs it stores start from: `find` matches only runs of that base,
        # so a retrained or replaced base model never serves another's stored runs.
        self._base_dir = base_dir
        # run id -> (run.json's mtime, run_key and base, created, all rounds ran): what `find`
        # reads, kept so that a lookup parses only the runs stored or saved again since the last.
        self._index: dict[str, tuple[int, str, float, bool]] = {}

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
        extras: RunExtras | None = None,
    ) -> Path:
        extras = extras or RunExtras()
        final = self.path(run_id)
        tmp = self.root / f".{run_id}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        save_arrays(weights, model_config, tmp)
        (tmp / "metrics.csv").write_text(history_csv(history))
        if extras.clients:
            (tmp / "clients.csv").write_text(clients_csv(extras.clients))
        record = {
            "config": asdict(config),
            "history": [asdict(r) for r in history],
            "created": time.time(),
            "message": message,
            "base": self.base,
            "baseline": [asdict(r) for r in extras.baseline],
            "clients": [asdict(f) for f in extras.clients],
            "personal": [asdict(p) for p in extras.personal.values()],
            "gains": [asdict(g) for g in extras.gains],
            "races": [asdict(r) for r in extras.races],
            "leaks": [asdict(leak) for leak in extras.leaks.values()],
        }
        (tmp / "run.json").write_text(json.dumps(record, default=_plain))
        if (final / PERSONAL_DIR).exists():  # the characters' models, saved as they were made
            (final / PERSONAL_DIR).rename(tmp / PERSONAL_DIR)
        if (final / KERAS_FILE).exists():  # written by the queue after the run (TensorFlow)
            (final / KERAS_FILE).rename(tmp / KERAS_FILE)
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
                [_round(r) for r in points]
                for points in (record["history"], record.get("baseline", []))
            )
            races = [
                Race(**{**r, "history": [_round(p) for p in r["history"]]})
                for r in record.get("races", [])
            ]
            leaks = {leak["client_id"]: _leak(leak) for leak in record.get("leaks", [])}
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
            races,
            leaks,
        )

    @functools.cached_property
    def base(self) -> str:
        """The base model's fingerprint ('' for a store not tied to one)."""
        return fingerprint(self._base_dir) if self._base_dir is not None else ""

    def find(self, config: FederatedConfig) -> tuple[str, float] | None:
        """The newest stored run that trained exactly `config` from this store's base model to
        its last round: (its id, when it was stored), or None."""
        key = stored_key(config, self.base)
        found = [
            (created, run_id)
            for run_id, (_, k, created, complete) in self._scan().items()
            if k == key and complete
        ]
        return max(found)[::-1] if found else None

    def _scan(self) -> dict[str, tuple[int, str, float, bool]]:
        """The index, brought up to date: a stat per run, a parse per new or re-saved one."""
        index = {}
        for directory in self.root.iterdir() if self.root.exists() else ():
            if not is_run_id(directory.name):  # a run being written: `.ID.tmp`
                continue
            try:
                stamp = (directory / "run.json").stat().st_mtime_ns
            except OSError:  # not a run, or pruned meanwhile
                continue
            entry = self._index.get(directory.name)
            if entry is None or entry[0] != stamp:
                try:
                    record = json.loads((directory / "run.json").read_text())
                    config = FederatedConfig(
                        **{**record["config"], "client_ids": tuple(record["config"]["client_ids"])}
                    )
                except (OSError, ValueError, KeyError, TypeError):  # damaged, or older fields
                    continue
                complete = len(record["history"]) == config.rounds + 1
                key = stored_key(config, record.get("base", ""))
                entry = (stamp, key, record.get("created", 0.0), complete)
            index[directory.name] = entry
        self._index = index
        return index

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
