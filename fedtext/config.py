"""Typed, frozen configuration objects: one per job, each default saying why it is what it is."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from fedtext.vocab import VOCAB_SIZE

SERVER_OPTIMIZERS = ("sgd", "momentum", "adam")


class ConfigError(ValueError):
    """A setting out of range, with a one-line reason."""


@dataclass(frozen=True)
class ModelConfig:
    """Construction arguments, saved beside the weights so any weights file rebuilds its model."""

    vocab_size: int = VOCAB_SIZE  # 86 characters plus the padding id
    embedding_dim: int = 256  # the tutorial's size
    rnn_units: int = 1024  # the tutorial's GRU width; about 4.05 M parameters in all


def _positive_finite(name: str, value: float) -> None:
    if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{name} must be a positive finite number, got {value!r}")


def _at_least(name: str, value: int, low: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ConfigError(f"{name} must be a whole number of at least {low}, got {value!r}")


@dataclass(frozen=True)
class PretrainConfig:
    """Centralised pre-training of the base model on plain text files."""

    epochs: int = 12  # about 2 min each on 2 cores for the two Dickens novels
    batch_size: int = 64  # sequences per step, as in TF's text-generation tutorial
    seq_length: int = 100  # the tutorial's sequence length
    learning_rate: float = 2e-3  # Adam, decayed to zero along a cosine over all steps
    holdout_fraction: float = 0.05  # the tail of each file, never trained on
    seed: int = 0
    model: ModelConfig = field(default_factory=ModelConfig)

    def __post_init__(self):
        _at_least("epochs", self.epochs, 1)
        _at_least("batch size", self.batch_size, 1)
        _at_least("sequence length", self.seq_length, 2)
        _positive_finite("learning rate", self.learning_rate)
        if not 0 < self.holdout_fraction < 0.5:
            raise ConfigError(
                f"held-out fraction must lie in (0, 0.5), got {self.holdout_fraction!r}"
            )


@dataclass(frozen=True)
class FederatedConfig:
    """One Federated Averaging run; the page builds it from widgets, tests with tiny values."""

    client_ids: tuple[str, ...] = ()  # the Shakespeare characters taking part
    rounds: int = 10
    # Plain SGD on each client. The tutorial's 0.5 wrecked the base model (accuracy 0.401 ->
    # 0.171); measured here on the tutorial's clients, 0.1 swings between 0.28 and 0.42 and 0.3
    # diverges, while 0.03 climbs steadily (0.437 -> 0.450 held-out in 10 rounds).
    client_learning_rate: float = 0.03
    server_optimizer: str = "sgd"  # "sgd" with rate 1.0 is plain Federated Averaging
    server_learning_rate: float = 1.0
    batches_per_client: int = 5  # the tutorial's .take(5)
    clients_per_round: int = 0  # 0 means every chosen client takes part in every round
    batch_size: int = 8  # the tutorial's client batch
    seq_length: int = 100  # the tutorial's sequence length
    shuffle_buffer: int = 100  # the tutorial's buffer
    eval_batch_size: int = 64  # evaluation needs no gradients, so bigger batches are cheaper
    seed: int = 0

    def __post_init__(self):
        object.__setattr__(self, "client_ids", tuple(self.client_ids))
        if not self.client_ids:
            raise ConfigError("choose at least one client")
        _at_least("rounds", self.rounds, 1)
        _positive_finite("client learning rate", self.client_learning_rate)
        _positive_finite("server learning rate", self.server_learning_rate)
        if self.server_optimizer not in SERVER_OPTIMIZERS:
            raise ConfigError(
                f"server optimizer must be one of {', '.join(SERVER_OPTIMIZERS)}, "
                f"got {self.server_optimizer!r}"
            )
        _at_least("batches per client", self.batches_per_client, 1)
        _at_least("clients per round", self.clients_per_round, 0)
        if self.clients_per_round > len(self.client_ids):
            raise ConfigError(
                f"clients per round ({self.clients_per_round}) exceeds the "
                f"{len(self.client_ids)} chosen clients"
            )
        _at_least("batch size", self.batch_size, 1)
        _at_least("sequence length", self.seq_length, 2)
        _at_least("seed", self.seed, 0)

    @property
    def cohort_size(self) -> int:
        return self.clients_per_round or len(self.client_ids)


@dataclass(frozen=True)
class ServerLimits:
    """Per-visitor bounds on a shared server, so one visitor cannot take it."""

    max_rounds: int = 50  # about 10 minutes of the default setting on 2 cores
    max_clients: int = 100  # the page's held-out evaluation grows with the chosen clients
    max_batches_per_client: int = 20
    max_generate_chars: int = 1000
    max_jobs_per_visitor: int = 1  # queued or running at once
    max_queue: int = 20  # jobs waiting in all

    def check(self, config: FederatedConfig) -> None:
        for name, value, limit in (
            ("rounds", config.rounds, self.max_rounds),
            ("clients", len(config.client_ids), self.max_clients),
            ("batches per client", config.batches_per_client, self.max_batches_per_client),
        ):
            if value > limit:
                raise ConfigError(f"{name} is limited to {limit} on this server, got {value}")
