"""`fedtext communication`: the paper's experiment on our clients, FedSGD against FedAvg with 1,
5 and 20 local steps, as rounds and bytes to the same held-out accuracy."""

from __future__ import annotations

import argparse
import dataclasses
import math

from fedtext.cli.args import chosen_base_dir, federated_config
from fedtext.learning.communication import human_bytes
from fedtext.learning.model_on_clients import ModelOnClients
from fedtext.learning.records import history_csv
from fedtext.learning.rounds_to_target import contenders, run_to_target, table
from fedtext.text import plays


def _print(label: str, result) -> None:
    if result.round_num == 0 or math.isnan(result.eval_accuracy):
        return
    print(
        f"  {label}, round {result.round_num:3d}: held-out accuracy {result.eval_accuracy:.3f}"
        f" | up {human_bytes(result.bytes_up)} | {result.seconds:.1f} s",
        flush=True,
    )


def cmd_communication(args: argparse.Namespace) -> int:
    train, test = plays.load_client_data()
    config = federated_config(args, lambda: train.client_ids)
    config = dataclasses.replace(config, rounds=args.max_rounds)
    base_dir = chosen_base_dir(args.base)
    if args.output:
        args.output.mkdir(parents=True, exist_ok=True)
    base = ModelOnClients(config, train, test, base_dir).evaluate()[1]
    target = base + args.target_gain / 100
    print(f"base model: held-out accuracy {base:.3f}; target {target:.3f}", flush=True)
    finishes = []
    for label, steps, race in contenders(config, args.steps):
        print(f"{label}: up to {race.rounds} rounds", flush=True)
        finish = run_to_target(label, steps, race, (train, test), base_dir, target, _print)
        finishes.append(finish)
        if args.output:
            slug = label.lower().replace(",", "").replace(" ", "-")
            (args.output / f"{slug}.csv").write_text(history_csv(finish.history))
    text = table(finishes, base, target)
    print("\n" + text, flush=True)
    if args.output:
        (args.output / "table.md").write_text(text + "\n")
    return 0
