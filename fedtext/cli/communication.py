"""`fedtext communication`: the paper's experiment on our clients, FedSGD against FedAvg with 1,
5 and 20 local steps, as rounds and bytes to the same held-out accuracy; with drop-outs or
stragglers, FedAvg against FedProx with them and FedAvg without them."""

from __future__ import annotations

import argparse
import math

from fedtext.cli.args import chosen_base_dir, federated_config
from fedtext.learning.model_on_clients import ModelOnClients
from fedtext.learning.records import Race, history_csv, human_bytes, races_table
from fedtext.learning.rounds_to_target import contenders, race, straggler_contenders
from fedtext.text import plays


def _print(so_far: Race) -> None:
    result = so_far.history[-1]
    if result.round_num == 0 or math.isnan(result.eval_accuracy):
        return
    print(
        f"  {so_far.label}, round {result.round_num:3d}: held-out accuracy "
        f"{result.eval_accuracy:.3f}"
        f" | up {human_bytes(result.bytes_up)} | {result.seconds:.1f} s",
        flush=True,
    )


def cmd_communication(args: argparse.Namespace) -> int:
    train, test = plays.load_client_data()
    config = federated_config(args, lambda: train.client_ids)
    base_dir = chosen_base_dir(args.base)
    if args.output:
        args.output.mkdir(parents=True, exist_ok=True)
    base = ModelOnClients(config, train, test, base_dir).evaluate()[1]
    target = base + args.target_gain / 100
    print(f"base model: held-out accuracy {base:.3f}; target {target:.3f}", flush=True)
    uneven = config.dropout_chance or config.straggler_chance
    races = []
    for contender in straggler_contenders(config) if uneven else contenders(config, args.steps):
        print(f"{contender.label}: up to {args.max_rounds} rounds", flush=True)
        for so_far in race(contender, (train, test), base_dir, target, args.max_rounds):
            _print(so_far)
        races.append(so_far)
        if args.output:
            slug = contender.label.lower().translate(str.maketrans(" ", "-", ",()."))
            (args.output / f"{slug}.csv").write_text(history_csv(so_far.history))
    text = races_table(races)
    print("\n" + text, flush=True)
    if args.output:
        (args.output / "table.md").write_text(text + "\n")
    return 0
