"""What a round costs: the bytes a round moves (from the round's TFF types), what 8-bit updates
save and cost in accuracy and round time, and the paper's experiment, FedSGD against FedAvg's
local steps in rounds to the same held-out accuracy."""

from __future__ import annotations

import dataclasses

from fedtext.bench.results import Results, Row, Settings, median

SECTION = "9 communication"
BITS = 8
# The comparison at issue 26's size: the page's default clients and settings, each contender
# until it gains the lesson's target (fedtext.learning.rounds_to_target.TARGET_GAIN, 2 points)
# or runs MAX_ROUNDS rounds (quick: 3); then 4 rounds of each compression run.
MAX_ROUNDS = 20
COMPRESSION_ROUNDS = 4


def measure_traffic(ctx: dict, settings: Settings) -> dict:
    """Bytes per client and round of the page's default round, plain and with 8-bit updates,
    and the floor: the model's trainable weights as float32, what any plain update carries."""
    from fedtext.config import FederatedConfig
    from fedtext.learning.communication import process_traffic
    from fedtext.learning.process import build_process
    from fedtext.model.keras_model import load_model
    from fedtext.service.links import DEFAULT_SETUP

    model, model_config = load_model(settings.base_dir)
    plain = FederatedConfig(**DEFAULT_SETUP)
    packed = dataclasses.replace(plain, compression_bits=BITS)
    traffic = {}
    for name, c in (("plain", plain), ("packed", packed)):
        process = build_process(model_config, c.client_optimizer, c.server_optimizer, c.aggregation)
        traffic[name] = process_traffic(process)
    floor = sum(w.numpy().nbytes for w in model.trainable_weights)
    return {"plain": traffic["plain"], "packed": traffic["packed"], "floor": floor}


def compare_compression(ctx: dict, settings: Settings) -> dict:
    """The page's default run with plain and with 8-bit updates, rounds interleaved so both see
    the same machine: each one's held-out gain (evaluated at the end) and median round time
    (each trainer's first round, TFF's one-off costs, left out)."""
    from fedtext.config import FederatedConfig
    from fedtext.learning.training import FederatedTrainer
    from fedtext.service.links import DEFAULT_SETUP

    rounds = 2 if settings.quick else COMPRESSION_ROUNDS
    plain = FederatedConfig(**{**DEFAULT_SETUP, "rounds": rounds, "eval_every": rounds})
    packed = dataclasses.replace(plain, compression_bits=BITS)
    trainers = [
        FederatedTrainer(c, ctx["train"], ctx["test"], settings.base_dir) for c in (plain, packed)
    ]
    iterators = [t.rounds() for t in trainers]
    times: list[list[float]] = [[], []]
    for round_num in range(1 + rounds):
        for kind, iterator in enumerate(iterators):
            result = next(iterator)
            print(f"    {('plain', f'{BITS}-bit')[kind]} round {round_num}: {result.seconds:.1f} s")
            if 2 <= round_num < rounds:  # not the base, the warm-up, nor the evaluated last
                times[kind].append(result.seconds)
    gains = [100 * (t.history[-1].eval_accuracy - t.history[0].eval_accuracy) for t in trainers]
    return {
        "rounds": rounds,
        "gains": gains,
        "seconds": [median(t) if t else float("nan") for t in times],
        "paired": median([p / q for q, p in zip(*times, strict=True)]) if times[0] else None,
    }


def race(ctx: dict, settings: Settings) -> dict:
    """FedSGD and FedAvg with 1, 5 and 20 local steps with the page's default clients and
    settings, each until it gains TARGET_GAIN points or runs MAX_ROUNDS rounds."""
    from fedtext.config import FederatedConfig
    from fedtext.learning.records import races_table
    from fedtext.learning.rounds_to_target import TARGET_GAIN, contenders, race
    from fedtext.service.links import DEFAULT_SETUP

    most = 3 if settings.quick else MAX_ROUNDS
    config = FederatedConfig(**{**DEFAULT_SETUP, "rounds": most})
    from fedtext.learning.model_on_clients import ModelOnClients

    base = ModelOnClients(config, ctx["train"], ctx["test"], settings.base_dir).evaluate()[1]
    target = base + TARGET_GAIN / 100
    races = {}
    for contender in contenders(config):
        print(f"  {contender.label}, to {target:.4f} ...", flush=True)
        data = (ctx["train"], ctx["test"])
        for so_far in race(contender, data, settings.base_dir, target, most):
            r = so_far.history[-1]
            print(
                f"    round {r.round_num}: accuracy {r.eval_accuracy:.4f}, {r.seconds:.1f} s, "
                f"{r.cpu_seconds:.1f} CPU s",
                flush=True,
            )
        races[contender.label] = so_far
    table = races_table(list(races.values()))
    return {"races": races, "table": table, "most": most, "gain": TARGET_GAIN}


def run_communication(ctx: dict, settings: Settings, results: Results) -> None:
    traffic = measure_traffic(ctx, settings)
    plain, packed, floor = traffic["plain"], traffic["packed"], traffic["floor"]
    results.add(
        Row(
            "communication.bytes_per_client_round",
            SECTION,
            "bytes a client sends in a round of the page's default setup (from TFF's types)",
            plain.up,
            "B",
            note=f"floor: the model's float32 weights, {floor:,} B; the rest is the update's "
            f"weight and the metrics' sums; the server sends each client {plain.down:,} B",
        ),
        Row(
            "communication.compression_ratio.8bit",
            SECTION,
            f"bytes up per client, plain / {BITS}-bit (EncodedSumFactory.quantize_above_threshold)",
            plain.up / packed.up,
            "x",
            note=f"{packed.up:,} B against {plain.up:,} B; TF-MOT packs {BITS}-bit values into "
            "28 of each int32's bits, so 3.5x is the ceiling (4x with 32)",
        ),
    )
    raced = race(ctx, settings)
    print(raced["table"], flush=True)
    results.notes.append(raced["table"])
    sgd, avg = raced["races"].get("FedSGD"), raced["races"].get("FedAvg, 5 local steps")
    ratio, note = None, "FedAvg with 5 local steps did not reach the target"
    if sgd and avg and avg.rounds:
        sgd_rounds = sgd.rounds or sgd.rounds_run
        ratio = sgd_rounds / avg.rounds
        note = (
            f"FedSGD {'' if sgd.rounds else 'did not reach it in '}{sgd_rounds} rounds, "
            f"FedAvg {avg.rounds}; target +{raced['gain']:g} points; the paper's Shakespeare "
            "LSTM: 3,906 / 41 = 95x (to 54%, from scratch)"
        )
        if not sgd.rounds:
            note = "at least: " + note
    results.add(
        Row(
            "communication.fedsgd_over_fedavg_rounds",
            SECTION,
            "rounds to the target, FedSGD / FedAvg with 5 local steps",
            ratio,
            "x",
            note=note,
        )
    )
    compression = compare_compression(ctx, settings)
    plain_gain, packed_gain = compression["gains"]
    plain_s, packed_s = compression["seconds"]
    results.add(
        Row(
            "learning.compression_8bit.gain_points",
            SECTION,
            f"held-out gain of the page's default run with {BITS}-bit updates",
            packed_gain,
            "points",
            note=f"uncompressed, same run: {plain_gain:+.2f} points; "
            f"{compression['rounds']} rounds each",
        ),
        Row(
            "communication.compressed_round_ratio",
            SECTION,
            f"round time with {BITS}-bit updates / without (medians, interleaved rounds)",
            packed_s / plain_s if compression["paired"] else None,
            "x",
            target_max=1.1,
            note=f"{packed_s:.2f} s against {plain_s:.2f} s, evaluation left out; paired "
            f"{compression['paired']:.2f}x"
            if compression["paired"]
            else "no timed rounds: a run's first round and its evaluated last are left out",
        ),
    )
