"""Typed, frozen configuration objects: one per job, each default saying why it is what it is."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from fedtext.text.vocab import VOCAB_SIZE, unknown_chars

CLIENT_OPTIMIZERS = ("sgd", "adam")
SERVER_OPTIMIZERS = ("sgd", "momentum", "adam")
# Federated Averaging's client weights: by each client's number of training sequences (TFF's
# build_weighted_fed_avg, the tutorial's) or one vote per client (build_unweighted_fed_avg).
WEIGHTINGS = ("weighted", "uniform")
# How a round's cohort is drawn: every chosen client equally likely, or with a chance in
# proportion to its training text (Li et al. 2020's FedProx scheme; with uniform weighting the
# round is then an unbiased estimate of training on the pooled text).
SAMPLINGS = ("uniform", "by_text")
# DP-FedAvg's clipping of each client's update: TFF's adaptive (the clip follows the median
# update norm) or a fixed norm.
DP_CLIPPINGS = ("adaptive", "fixed")
# TFF's plain mean of the updates, robust_aggregator (adaptive clip and zeroing) or
# secure_aggregator (the server sees only the cohort's sum; simulated: docs/attacks.md).
AGGREGATORS = ("plain", "robust", "secure")
# The server's learning rate over a run: constant, or falling linearly to zero at the run's end
# (its last round, or the end of its CPU budget), which Li, Yumer & Ramanan 2020 ("Budgeted
# training") found the best schedule when the budget is fixed in advance.
SERVER_SCHEDULES = ("constant", "linear")
# McMahan et al. 2017's FedAvg and FedSGD, Li et al. 2020's FedProx (fedtext.learning.algorithms).
ALGORITHMS = ("fedavg", "fedsgd", "fedprox")
SERVER_MOMENTUM = 0.9  # FedAvgM's momentum in Reddi et al. 2021
ADAM_EPSILON = 1e-3  # FedAdam's epsilon in Reddi et al.; Keras' 1e-7 makes the first steps huge

# The tutorial trained on two clients of All's Well and Much Ado; TFF's ids there
# (..._CELIA, ..._OTHELLO) are artefacts of its parser, so we take each play's lead.
TUTORIAL_CLIENTS = ("ALL_S_WELL_THAT_ENDS_WELL_HELENA", "MUCH_ADO_ABOUT_NOTHING_BENEDICK")
TUTORIAL_EVAL_CLIENT = "KING_LEAR_KING_LEAR"  # the tutorial's THE_TRAGEDY_OF_KING_LEAR_KING
# The page's and the command line's default clients: Romeo and Juliet, whose verse the Dickens
# model knows least (held-out accuracy 0.414 against the tutorial pair's 0.437), gained +3.6
# points in the default 20 rounds (79 s of rounds on 2 cores), the tutorial's pair +2.3, Richard
# II's pair +2.9, Hamlet and Macbeth +1.0 (docs/learning.md). The tutorial's pair is one click
# away: the "TFF's tutorial" preset and the "Tutorial's 2" quick pick.
DEFAULT_CLIENTS = ("ROMEO_AND_JULIET_ROMEO", "ROMEO_AND_JULIET_JULIET")


SEQ_LENGTH = 100  # characters per training sequence: the tutorial's
SHUFFLE_BUFFER = 100  # speeches shuffled at once: the tutorial's buffer


class ConfigError(ValueError):
    """A setting out of range, with a one-line reason."""


@dataclass(frozen=True)
class ModelConfig:
    """Construction arguments, saved beside the weights so any weights file rebuilds its model."""

    vocab_size: int = VOCAB_SIZE  # 86 characters plus the padding id
    embedding_dim: int = 256  # the tutorial's size
    rnn_units: int = 1024  # the tutorial's GRU width; about 4.05 M parameters in all


def positive_finite(name: str, value: float) -> None:
    if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{name} must be a positive finite number, got {value!r}")


def in_range(name: str, value: float, low: float, high: float) -> None:
    if not isinstance(value, (int, float)) or not low <= value < high:
        below = f" and below {high:g}" if math.isfinite(high) else ""
        raise ConfigError(f"{name} must be at least {low:g}{below}, got {value!r}")


def at_least(name: str, value: int, low: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ConfigError(f"{name} must be a whole number of at least {low}, got {value!r}")


@dataclass(frozen=True)
class PretrainConfig:
    """Centralised pre-training of the base model on plain text files."""

    epochs: int = 12  # about 2 min each on 2 cores for the two Dickens novels
    batch_size: int = 64  # sequences per step, as in TF's text-generation tutorial
    seq_length: int = SEQ_LENGTH
    learning_rate: float = 2e-3  # Adam, decayed to zero along a cosine over all steps
    holdout_fraction: float = 0.05  # the tail of each file, never trained on
    seed: int = 0
    model: ModelConfig = field(default_factory=ModelConfig)

    def __post_init__(self):
        at_least("epochs", self.epochs, 1)
        at_least("batch size", self.batch_size, 1)
        at_least("sequence length", self.seq_length, 2)
        positive_finite("learning rate", self.learning_rate)
        if not 0 < self.holdout_fraction < 0.5:
            raise ConfigError(
                f"held-out fraction must lie in (0, 0.5), got {self.holdout_fraction!r}"
            )


@dataclass(frozen=True)
class Aggregation:
    """How the server combines the clients' updates: what a compiled round depends on besides
    the optimizer kinds, so it is part of the compiled round's cache key."""

    weighting: str = "weighted"  # one of WEIGHTINGS
    # TFF's differentially private mean (None: the plain mean); its noise, clip and cohort size
    # are constants of the compiled round, not hyper-parameters.
    dp_clipping: str | None = None
    noise_multiplier: float = 0.0
    clients_per_round: int = 0  # the DP mean divides the noised sum by this, not by the count
    dp_clip: float = 0.0  # the fixed clip; unused by adaptive clipping
    # Each round also reports every client's figures; never with DP.
    client_figures: bool = False
    algorithm: str = "fedavg"  # one of ALGORITHMS
    compression_bits: int = 0  # the updates' quantization (0: sent as float32)
    aggregator: str = "plain"  # one of AGGREGATORS
    update_clip: float = 0.0  # a fixed L2 clip on each client's update (0: none)

    def __post_init__(self):
        _one_of("weighting", self.weighting, WEIGHTINGS)
        if self.dp_clipping is not None:
            _one_of("DP clipping", self.dp_clipping, DP_CLIPPINGS)
            if self.weighting != "uniform":
                raise ConfigError("differential privacy needs uniform weighting")
            at_least("clients per round", self.clients_per_round, 1)


@dataclass(frozen=True)
class FederatedConfig:
    """One Federated Averaging run; the page builds it from widgets, tests with tiny values.

    The defaults come from a measured sweep (docs/learning.md); fedtext.presets holds others.
    """

    client_ids: tuple[str, ...] = ()  # the Shakespeare characters taking part
    rounds: int = 20  # about 90 s with the defaults on 2 cores
    # Client Adam restarts every round, and its first steps moved this model away from its data
    # (held-out accuracy fell); plain SGD does not restart badly.
    client_optimizer: str = "sgd"
    client_learning_rate: float = 0.03  # the tutorial's 0.5 wrecks the model; 0.1 is erratic
    # Clip each local gradient to this global norm (0: off): a step size that would wreck the
    # base model in one step then moves it at most lr x clip.
    clip_norm: float = 1.0
    # FedAvgM: the server's momentum carries the direction every round agrees on, which is what
    # made 20 rounds enough (plain averaging at 1.0 gained 1.5 points, this 2.3).
    server_optimizer: str = "momentum"
    server_learning_rate: float = 0.3
    server_schedule: str = "constant"  # one of SERVER_SCHEDULES
    batches_per_client: int = 5  # local steps per round; the tutorial's .take(5)
    clients_per_round: int = 0  # 0 means every chosen client takes part in every round
    sampling: str = "uniform"  # one of SAMPLINGS; applies when clients_per_round samples
    # Sequences per local step, the tutorial's 8. A batch of 64 reads 2.7x more text per second,
    # but early in fine-tuning the number of steps matters more than their size: batch 64 gained
    # less in the same time.
    batch_size: int = 8
    seq_length: int = SEQ_LENGTH
    shuffle_buffer: int = SHUFFLE_BUFFER
    eval_batch_size: int = 64  # evaluation needs no gradients, so bigger batches are cheaper
    eval_every: int = 1  # evaluate every N rounds and the last: the whole federation's is slow
    seed: int = 0
    # "weighted" averages clients by their text (big speakers count more, the tutorial's);
    # "uniform" gives each character one vote, which differential privacy needs: a client's
    # influence must be bounded whatever its size.
    weighting: str = "weighted"
    # DP-FedAvg (McMahan et al. 2018): Gaussian noise of this many times the clip norm is added
    # to the sum of clipped client updates each round; 0 turns differential privacy off. About 1
    # or more is needed for a meaningful epsilon (fedtext.learning.privacy).
    noise_multiplier: float = 0.0
    dp_clipping: str = "adaptive"  # TFF's default: no clip to guess, it tracks the median norm
    # The fixed clip on each client's update (L2 norm of its weight change): TFF's adaptive
    # clip's starting value. With the default client SGD a round moves a client at most
    # lr x clip_norm x batches = 0.15, so this clips only the fastest-moving clients.
    dp_clip: float = 0.1
    # Per client and round: its share of the average, update norm, cosine with the average and
    # own loss before and after. The two extra passes over each client's
    # batches made a round of the shipped model 1.36x TFF's plain one (2 clients x 5 batches,
    # 2 shared cores), so they are asked for. Off under differential privacy, whose guarantee
    # covers the model, not per-client norms and losses sent to the server.
    client_figures: bool = False
    # Rounds sent to the TFF worker in one call, so the server state (48 MB for the shipped
    # model with FedAdam) crosses between this process and the worker once per call, not once
    # per round. The rounds are the same; only the model of a call's last round comes back, so
    # a call also ends at every evaluated round. With `fedtext worker`s it is always 1: a call
    # of several rounds cannot be split among them.
    rounds_per_call: int = 1
    # A round whose training or held-out loss (nats per character) passes this has diverged:
    # training stops there, keeping the round before. A uniform guess over the 87 ids costs
    # ln(87) = 4.47, so 10 is a model wrecked, not a bad round. NaN always stops training.
    divergence_loss: float = 10.0
    algorithm: str = "fedavg"  # one of ALGORITHMS; FedSGD's server takes the client rate's step
    # FedProx's mu: each local gradient gets mu x (weights - the server's model); 0 is FedAvg.
    # Li et al. 2020 searched 0.001 to 1; 0.1 is a middle of that range, not a measured best.
    proximal_strength: float = 0.1
    # Quantize each client's update to this many bits a number (TFF's EncodedSumFactory; 0: off,
    # float32): 8 bits send 3.5x fewer bytes up (docs/communication.md).
    compression_bits: int = 0
    # The chance a sampled client's update never arrives, and that a client lags, running only
    # 1 to batches_per_client - 1 of its local steps; drawn per round from the seed (0: never).
    dropout_chance: float = 0.0
    straggler_chance: float = 0.0
    aggregator: str = "plain"  # AGGREGATORS; plain is published FedAvg's mean
    # A fixed L2 clip on each client's update (TFF's clipping_factory; 0: none, as FedAvg).
    update_clip: float = 0.0
    # A poisoned character (fedtext.learning.attacks; empty: none): its lines become trigger +
    # target, its update scaled by attack_boost (Bagdasaryan et al. 2020's model replacement).
    attack_client: str = ""
    attack_trigger: str = ""
    attack_target: str = ""
    attack_boost: float = 1.0  # 1: an honest-sized update; more replaces more of the model

    def __post_init__(self):
        object.__setattr__(self, "client_ids", tuple(self.client_ids))
        if not self.client_ids:
            raise ConfigError("choose at least one client")
        at_least("rounds", self.rounds, 1)
        _one_of("client optimizer", self.client_optimizer, CLIENT_OPTIMIZERS)
        positive_finite("client learning rate", self.client_learning_rate)
        if not isinstance(self.clip_norm, (int, float)) or not self.clip_norm >= 0:
            raise ConfigError(
                f"clip norm must be 0 (off) or a positive number, got {self.clip_norm!r}"
            )
        _one_of("server optimizer", self.server_optimizer, SERVER_OPTIMIZERS)
        positive_finite("server learning rate", self.server_learning_rate)
        _one_of("server schedule", self.server_schedule, SERVER_SCHEDULES)
        at_least("batches per client", self.batches_per_client, 1)
        at_least("clients per round", self.clients_per_round, 0)
        if self.clients_per_round > len(self.client_ids):
            raise ConfigError(
                f"clients per round ({self.clients_per_round}) exceeds the "
                f"{len(self.client_ids)} chosen clients"
            )
        _one_of("sampling", self.sampling, SAMPLINGS)
        at_least("batch size", self.batch_size, 1)
        at_least("sequence length", self.seq_length, 2)
        at_least("evaluate every", self.eval_every, 1)
        at_least("seed", self.seed, 0)
        at_least("rounds per call", self.rounds_per_call, 1)
        if self.client_figures and self.rounds_per_call > 1:
            raise ConfigError("client figures need one round per call (rounds per call 1)")
        if not isinstance(self.divergence_loss, (int, float)) or not self.divergence_loss > 0:
            raise ConfigError(f"divergence loss must be positive, got {self.divergence_loss!r}")
        _one_of("weighting", self.weighting, WEIGHTINGS)
        if (
            not isinstance(self.noise_multiplier, (int, float))
            or not math.isfinite(self.noise_multiplier)
            or self.noise_multiplier < 0
        ):
            raise ConfigError(
                "noise multiplier must be 0 (no differential privacy) or a positive number, "
                f"got {self.noise_multiplier!r}"
            )
        _one_of("DP clipping", self.dp_clipping, DP_CLIPPINGS)
        positive_finite("DP clip", self.dp_clip)
        self._check_communication()
        if self.private and self.weighting != "uniform":
            # A refusal, not a silent switch: the front ends switch to uniform and say so
            # (fedtext.cli, the page), so a config object never means something it does not say.
            raise ConfigError(
                "differential privacy weights every client equally: set weighting to uniform"
            )
        _check_defences(self)

    def _check_communication(self) -> None:
        _one_of("algorithm", self.algorithm, ALGORITHMS)
        in_range("proximal strength", self.proximal_strength, 0, math.inf)
        in_range("dropout chance", self.dropout_chance, 0, 1)
        in_range("straggler chance", self.straggler_chance, 0, 1)
        if type(self.compression_bits) is not int or self.compression_bits not in range(17):
            raise ConfigError(
                f"compression bits must be 1 to 16 (0: off), got {self.compression_bits!r}"
            )
        plain = self.algorithm == "fedavg" and not self.compression_bits
        if self.client_figures and not plain:
            raise ConfigError("client figures are measured for FedAvg without compression")
        if self.private and not plain:
            raise ConfigError("differential privacy here is DP-FedAvg: FedAvg, no compression")
        if self.algorithm == "fedsgd" and self.client_optimizer != "sgd":
            raise ConfigError("FedSGD takes no local steps: its client optimizer must be sgd")

    @property
    def private(self) -> bool:
        """Whether the run is DP-FedAvg (a positive noise multiplier)."""
        return self.noise_multiplier > 0

    @property
    def aggregation(self) -> Aggregation:
        """The aggregation to compile, with the settings that do not apply left at their
        defaults, so runs differing only in those share one compiled round."""
        if not self.private:
            return Aggregation(
                self.weighting,
                client_figures=self.client_figures,
                algorithm=self.algorithm,
                compression_bits=self.compression_bits,
                aggregator=self.aggregator,
                update_clip=float(self.update_clip),
            )
        return Aggregation(
            self.weighting,
            self.dp_clipping,
            float(self.noise_multiplier),
            self.cohort_size,
            float(self.dp_clip) if self.dp_clipping == "fixed" else 0.0,
            client_figures=False,
        )

    def as_run(self) -> FederatedConfig:
        """The same run with the settings it does not use at their defaults (the DP clip
        without noise, FedProx's strength for another algorithm): what identifies the run."""
        unused = {}
        if not self.private:
            unused.update(dp_clipping=FederatedConfig.dp_clipping, dp_clip=FederatedConfig.dp_clip)
        elif self.dp_clipping != "fixed":
            unused.update(dp_clip=FederatedConfig.dp_clip)
        if self.algorithm != "fedprox":
            unused.update(proximal_strength=FederatedConfig.proximal_strength)
        return replace(self, **unused)

    def server_rate(self, progress: float) -> float:
        """The server's learning rate once `progress` (0 to 1) of the run is done."""
        if self.server_schedule == "linear":
            return self.server_learning_rate * max(0.0, 1.0 - progress)
        return self.server_learning_rate

    def evaluates(self, round_num: int) -> bool:
        return round_num % self.eval_every == 0 or round_num == self.rounds

    @property
    def cohort_size(self) -> int:
        return self.clients_per_round or len(self.client_ids)


def _check_defences(c: FederatedConfig) -> None:
    """The aggregator, the update clip and the attacker (fedtext.learning.attacks)."""
    _one_of("aggregator", c.aggregator, AGGREGATORS)
    if not isinstance(c.update_clip, (int, float)) or not c.update_clip >= 0:
        raise ConfigError(f"update clip must be 0 (off) or positive, got {c.update_clip!r}")
    if (c.aggregator != "plain" or c.update_clip) and (c.private or c.client_figures):
        raise ConfigError("DP and client figures need the plain aggregator, no update clip")
    if (c.aggregator != "plain" or c.update_clip) and (
        c.algorithm != "fedavg" or c.compression_bits
    ):
        raise ConfigError("the robust and secure aggregators and the update clip are for FedAvg")
    positive_finite("attack boost", c.attack_boost)
    if not c.attack_client:
        if c.attack_trigger or c.attack_target or c.attack_boost != 1:
            raise ConfigError("an attack needs its attacker: set the attack client")
        return
    if c.attack_client not in c.client_ids:
        raise ConfigError(f"the attack client {c.attack_client!r} is not one of the chosen clients")
    if not c.attack_trigger or not c.attack_target:
        raise ConfigError("an attack needs a trigger and a target text")
    if c.rounds_per_call != 1 or c.client_figures:
        raise ConfigError("an attack runs one round per call, without client figures")
    bad = unknown_chars(c.attack_trigger + c.attack_target)
    if bad:
        raise ConfigError(f"the attack's text has characters outside the vocabulary: {bad}")


def _one_of(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {value!r}")


@dataclass(frozen=True)
class CentralisedConfig:
    """The centralised baseline's recipe: the best measured on the pooled text (docs/learning.md),
    whatever the federated run's client settings, so the gap is to what pooling could do."""

    optimizer: str = "adam"  # with no rounds it never restarts: twice SGD's gain per step here
    learning_rate: float = 1e-3  # 3e-3 lost 5 points in its first 10 steps
    clip_norm: float = 1.0
    batch_size: int = 64  # one process owns both cores: the bigger batch reads 2.7x the text
    steps_per_point: int = 10  # evaluated every this many steps

    def __post_init__(self):
        _one_of("optimizer", self.optimizer, CLIENT_OPTIMIZERS)
        positive_finite("learning rate", self.learning_rate)
        at_least("batch size", self.batch_size, 1)
        at_least("steps per point", self.steps_per_point, 1)
