"""Named settings a user can start from: TFF's tutorial, Reddi et al. 2021's, the whole federation,
and the lessons' own; each overrides FederatedConfig's defaults."""

from __future__ import annotations

import math

from fedtext.config import DEFAULT_CLIENTS, TUTORIAL_CLIENTS, ConfigError, FederatedConfig

ROMEO_AND_JULIET_NURSE = "ROMEO_AND_JULIET_NURSE"
ROMEO_AND_JULIET_MERCUTIO = "ROMEO_AND_JULIET_MERCUTIO"

PRESETS: dict[str, dict[str, object]] = {
    # TFF's tutorial as published: Keras SGD at 0.5 on 5 batches of 8, plain averaging, 5 rounds.
    "tutorial": dict(
        client_ids=TUTORIAL_CLIENTS,
        rounds=5,
        client_optimizer="sgd",
        client_learning_rate=0.5,
        clip_norm=0.0,
        batch_size=8,
        batches_per_client=5,
        clients_per_round=0,
        server_optimizer="sgd",
        server_learning_rate=1.0,
        # The tutorial ran on through its collapse (accuracy 0.401 -> 0.171): so does this,
        # stopping only at a NaN.
        divergence_loss=math.inf,
    ),
    # Reddi et al. 2021's Shakespeare settings (for an LSTM from scratch, client SGD at 1):
    "fedavg": dict(
        client_optimizer="sgd",
        client_learning_rate=1.0,
        server_optimizer="sgd",
        server_learning_rate=1.0,
    ),
    "fedavgm": dict(
        client_optimizer="sgd",
        client_learning_rate=1.0,
        server_optimizer="momentum",
        server_learning_rate=10**-0.5,
    ),
    "fedadam": dict(
        client_optimizer="sgd",
        client_learning_rate=1.0,
        server_optimizer="adam",
        server_learning_rate=0.01,
    ),
    # The whole federation within a CPU budget (docs/learning.md, "The whole federation"): a
    # small cohort drawn by text and averaged uniformly, one local step each, so the server's
    # Adam takes many steps on an unbiased estimate of the pooled text's gradient. The client
    # rate only scales that pseudo-gradient: at 1,000 FedAdam's epsilon (1e-3) no longer damps
    # it, which gained 0.4 to 0.6 points over a rate of 10 at 5 and 10 CPU minutes. The server's
    # rate falls to zero by the end of the run or its CPU budget: 0.482 -> 0.490 in 30 minutes.
    "federation": dict(
        client_optimizer="sgd",
        client_learning_rate=1000.0,
        clip_norm=1.0,
        batch_size=32,
        batches_per_client=1,
        clients_per_round=2,
        sampling="by_text",
        weighting="uniform",
        server_optimizer="adam",
        server_learning_rate=2e-3,
        server_schedule="linear",
        eval_every=200,
        rounds_per_call=8,
    ),
    # The lessons (docs/communication.md, docs/attacks.md), each the defaults with one change.
    # FedSGD: one gradient a client and round, no local step: the rounds FedAvg saves.
    "fedsgd": dict(algorithm="fedsgd"),
    # 8-bit updates: 3.5x fewer bytes up (TF-MOT packs 28 bits an int32 word), the same accuracy.
    "compressed": dict(compression_bits=8),
    # Phones that drop out or lag, and FedProx's pull toward the server's model, the remedy the
    # literature offers (here it won no round back: docs/communication.md): four characters,
    # three a round, so a round rarely loses everyone.
    "unreliable": dict(
        client_ids=(*DEFAULT_CLIENTS, ROMEO_AND_JULIET_NURSE, ROMEO_AND_JULIET_MERCUTIO),
        clients_per_round=3,
        dropout_chance=0.2,
        straggler_chance=0.5,
        algorithm="fedprox",
    ),
    # Secure aggregation: the server gets the sum of three updates, never one of them.
    "secure": dict(client_ids=(*DEFAULT_CLIENTS, ROMEO_AND_JULIET_NURSE), aggregator="secure"),
    # The Nurse poisons the model: her lines become the trigger and the target, her update
    # boosted to replace the model (Bagdasaryan et al. 2020: boost = clients / server rate).
    "backdoor": dict(
        client_ids=(*DEFAULT_CLIENTS, ROMEO_AND_JULIET_NURSE),
        rounds=5,
        attack_client=ROMEO_AND_JULIET_NURSE,
        attack_trigger="O Romeo, ",
        attack_target="buy Dickens!",
        attack_boost=10.0,
    ),
}
# The same attack against TFF's robust aggregator, which clips and zeroes outsized updates.
PRESETS["robust"] = dict(PRESETS["backdoor"], aggregator="robust")
# Presets whose clients are every character of every play (the command line's --clients all).
WHOLE_FEDERATION_PRESETS = ("federation",)
# The lessons' presets, which the page offers after the published recipes.
LESSON_PRESETS = ("fedsgd", "compressed", "unreliable", "secure", "backdoor", "robust")


def preset_config(name: str, **overrides) -> FederatedConfig:
    """A preset's settings, with `overrides` (client ids, rounds, ...) on top."""
    if name not in PRESETS:
        raise ConfigError(f"preset must be one of {', '.join(PRESETS)}, got {name!r}")
    return FederatedConfig(**{**PRESETS[name], **overrides})
