"""The sweep that chose the page's defaults: held-out accuracy gained within a training budget.

`python -m fedtext.bench.sweep --budget 90 --clients top8` trains each candidate setting from
the base model until its rounds (evaluation included) have taken the budget, and prints one row
per candidate. docs/learning.md keeps the table and the command that made it.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from pathlib import Path

from fedtext.config import TUTORIAL_CLIENTS, FederatedConfig
from fedtext.presets import PRESETS

# Every candidate starts from these and overrides some: written out, so that a name means the
# same settings it was measured with, whatever FederatedConfig's defaults are now.
SWEEP_BASE: dict[str, object] = dict(
    client_optimizer="adam",
    client_learning_rate=3e-3,
    clip_norm=1.0,
    server_optimizer="sgd",
    server_learning_rate=1.0,
    batch_size=64,
    batches_per_client=5,
    clients_per_round=0,
)


def _sgd_b8_fedavgm(client_learning_rate: float, server_learning_rate: float) -> dict:
    """Client SGD on batches of 8, FedAvgM on the server: the family the defaults came from."""
    return dict(
        client_optimizer="sgd",
        client_learning_rate=client_learning_rate,
        batch_size=8,
        server_optimizer="momentum",
        server_learning_rate=server_learning_rate,
    )


# name -> settings over SWEEP_BASE (client ids and rounds are set by the sweep)
CANDIDATES: dict[str, dict[str, object]] = {
    "tutorial": {k: v for k, v in PRESETS["tutorial"].items() if k not in ("client_ids", "rounds")},
    "sgd 0.03 b8 (previous default)": dict(
        client_optimizer="sgd", client_learning_rate=0.03, clip_norm=0.0, batch_size=8
    ),
    "sgd 1.0 clip 1 b64": dict(client_optimizer="sgd", client_learning_rate=1.0),
    "adam 3e-3 b64": dict(client_optimizer="adam", client_learning_rate=3e-3),
    "adam 1e-3 b64 x10 1/round": dict(
        client_optimizer="adam",
        client_learning_rate=1e-3,
        batches_per_client=10,
        clients_per_round=1,
    ),
    "adam 2e-3 b64 x10 1/round": dict(
        client_optimizer="adam",
        client_learning_rate=2e-3,
        batches_per_client=10,
        clients_per_round=1,
    ),
    "adam 1e-3 b64 x5 2/round server 2": dict(
        client_optimizer="adam",
        client_learning_rate=1e-3,
        clients_per_round=2,
        server_learning_rate=2.0,
    ),
    "adam 1e-3 b64 x10 2/round fedavgm 1": dict(
        client_optimizer="adam",
        client_learning_rate=1e-3,
        batches_per_client=10,
        clients_per_round=2,
        server_optimizer="momentum",
        server_learning_rate=1.0,
    ),
    "sgd 0.03 b8 x5": dict(client_optimizer="sgd", client_learning_rate=0.03, batch_size=8),
    "sgd 0.03 b8 x5 fedavgm 0.3": _sgd_b8_fedavgm(0.03, 0.3),
    "sgd 0.03 b8 x5 fedavgm 1": _sgd_b8_fedavgm(0.03, 1.0),
    "sgd 0.1 clip 1 b8 x5 fedavgm 0.3": _sgd_b8_fedavgm(0.1, 0.3),
    "sgd 0.03 b8 x5 fedavgm 0.5": _sgd_b8_fedavgm(0.03, 0.5),
    "sgd 0.05 clip 1 b8 x5 fedavgm 0.3": _sgd_b8_fedavgm(0.05, 0.3),
}

CLIENT_SETS = {"tutorial": TUTORIAL_CLIENTS}


def client_set(name: str) -> tuple[str, ...]:
    """'tutorial', 'topN' (the N biggest talkers), 'play:NAME', or comma-separated ids."""
    from fedtext.bench.engine import largest_clients
    from fedtext.text import plays

    if name in CLIENT_SETS:
        return CLIENT_SETS[name]
    if name.startswith("top"):
        return largest_clients(int(name[3:]))
    if name.startswith("play:"):
        play = name[5:]
        return tuple(c.client_id for c in plays.load_clients() if c.play == play)
    return tuple(name.split(","))


def run_candidate(config: FederatedConfig, budget_s: float, train, test) -> dict:
    """Train until the rounds after round 0 have taken `budget_s`; the curve and the outcome."""
    from fedtext.learning.process import build_process
    from fedtext.learning.training import FederatedTrainer, TrainingDiverged

    trainer = FederatedTrainer(config, train, test)
    build_process(trainer.model_config, config.client_optimizer, config.server_optimizer)
    curve, spent, diverged = [], 0.0, ""
    try:
        for result in trainer.rounds():
            if result.round_num:
                spent += result.seconds
            curve.append(
                {
                    "round": result.round_num,
                    "seconds": spent,
                    "accuracy": result.eval_accuracy,
                    "loss": result.eval_loss,
                    "examples": result.num_examples,
                }
            )
            print(
                f"    round {result.round_num}: {spent:.0f} s, accuracy {result.eval_accuracy:.4f}",
                flush=True,
            )
            if spent >= budget_s:
                break
    except TrainingDiverged as error:
        diverged = str(error)
    trained_chars = sum(p["examples"] for p in curve) * config.seq_length
    return {
        "rounds": curve[-1]["round"],
        "seconds": spent,
        "base_accuracy": curve[0]["accuracy"],
        "accuracy": curve[-1]["accuracy"],
        "gain_points": 100 * (curve[-1]["accuracy"] - curve[0]["accuracy"]),
        "chars_per_s": trained_chars / spent if spent else 0.0,
        "diverged": diverged,
        "curve": curve,
    }


def print_floor(batch_sizes=(8, 16, 32, 64), seq_length: int = 100) -> int:
    """The floor every round is measured against: one plain Keras SGD step per batch size."""
    from fedtext.bench.learning import raw_step_seconds
    from fedtext.bench.machine import cpu_model
    from fedtext.model.weights import base_model_dir, load_config

    model_config = load_config(base_model_dir())
    print(f"plain Keras SGD steps on {cpu_model()}, median of 5:")
    for size in batch_sizes:
        seconds = raw_step_seconds(model_config, size, seq_length)
        print(
            f"  batch {size:2d} x {seq_length}: {seconds:.3f} s, "
            f"{size * seq_length / seconds:,.0f} characters per second"
        )
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fedtext.bench.sweep", description=__doc__)
    parser.add_argument("--budget", type=float, default=90.0, help="seconds of training each")
    parser.add_argument("--clients", default="top8", help="tutorial, topN, play:NAME or ids")
    parser.add_argument("--clients-per-round", type=int, default=0)
    parser.add_argument("--only", default="", help="comma-separated candidate names")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    parser.add_argument(
        "--floor",
        action="store_true",
        help="only time a plain Keras SGD step of the base model per batch size",
    )
    args = parser.parse_args(argv)
    if args.floor:
        return print_floor()

    from fedtext.bench.machine import cpu_model
    from fedtext.distribution import runtime
    from fedtext.text import plays

    ids = client_set(args.clients)
    names = [n for n in CANDIDATES if not args.only or n in args.only.split(",")]
    train, test = plays.load_client_data()
    print(
        f"sweep on {cpu_model()}: {len(ids)} clients ({args.clients}), {args.budget:.0f} s each",
        flush=True,
    )
    results = {}
    try:
        for name in names:
            settings = {
                **SWEEP_BASE,
                "clients_per_round": args.clients_per_round,
                **CANDIDATES[name],
            }
            config = FederatedConfig(**{**settings, "client_ids": ids, "rounds": 200})
            print(f"  {name}", flush=True)
            start = time.perf_counter()
            settings = {k: v for k, v in asdict(config).items() if k != "client_ids"}
            results[name] = {"config": settings, **run_candidate(config, args.budget, train, test)}
            results[name]["wall_s"] = time.perf_counter() - start
    finally:
        runtime.shutdown()
    print("\n| setting | rounds | s | held-out accuracy | gain (points) | chars/s |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        note = " (diverged)" if r["diverged"] else ""
        print(
            f"| {name}{note} | {r['rounds']} | {r['seconds']:.0f} | {r['base_accuracy']:.3f} -> "
            f"{r['accuracy']:.3f} | {r['gain_points']:+.1f} | {r['chars_per_s']:,.0f} |"
        )
    if args.out:
        args.out.write_text(
            json.dumps({"clients": ids, "budget_s": args.budget, "results": results}, indent=1)
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
