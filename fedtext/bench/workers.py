"""Rounds over 1, 2 and 3 `fedtext worker`s on loopback, against this machine's own worker (the
floor), with the state each worker receives; on one machine the workers share its cores, so
this measures the machinery's cost, not a speed-up."""

from __future__ import annotations

import os
import re
import statistics
import tempfile
from pathlib import Path

from fedtext.bench.results import Results, Row, Settings

# Six characters of the page's default play: enough clients to give three workers two each.
CLIENTS = (
    "ROMEO_AND_JULIET_ROMEO",
    "ROMEO_AND_JULIET_JULIET",
    "ROMEO_AND_JULIET_NURSE",
    "ROMEO_AND_JULIET_MERCUTIO",
    "ROMEO_AND_JULIET_FRIAR_LAURENCE",
    "ROMEO_AND_JULIET_CAPULET",
)
WORKER_COUNTS = (1, 2, 3)


def _round_seconds(ctx: dict, settings: Settings, rounds: int) -> list[float]:
    """Wall seconds of rounds 2..rounds+1: round 1 builds the worker's graphs, and the last
    round's held-out evaluation runs here, not on the workers."""
    from fedtext.config import FederatedConfig
    from fedtext.learning.training import FederatedTrainer
    from fedtext.service.links import DEFAULT_SETUP

    config = FederatedConfig(
        **{**DEFAULT_SETUP, "client_ids": CLIENTS, "rounds": rounds + 2, "eval_every": 1000}
    )
    trainer = FederatedTrainer(config, ctx["train"], ctx["test"], settings.base_dir)
    history = list(trainer.rounds())
    return [r.seconds for r in history[2:-1]]


def _bytes_forwarded(log_path: Path) -> int:
    """What a stopped `fedtext worker` forwarded, both ways, from the last line of its log."""
    found = re.findall(r"forwarded (\d+) bytes in and (\d+) bytes out", log_path.read_text())
    return sum(map(int, found[-1])) if found else 0


def run_workers(ctx: dict, settings: Settings, results: Results) -> None:
    import portpicker

    from fedtext.distribution import runtime
    from fedtext.distribution.addresses import WorkerAddress
    from fedtext.distribution.worker import start_loopback
    from fedtext.model.keras_model import load_model

    rounds = 1 if settings.quick else settings.repeats
    at_once = len(os.sched_getaffinity(0))
    runtime.use_workers(())
    floor = statistics.median(_round_seconds(ctx, settings, rounds))
    model, _ = load_model(settings.base_dir)
    state_mb = sum(w.nbytes for w in model.get_weights()) / 1e6
    rows = [
        Row(
            "workers.local_round_s",
            "7 workers",
            f"round on this machine's own worker ({len(CLIENTS)} clients, the page's settings)",
            floor,
            "s",
            note=f"median of {rounds}; the floor for the rows below",
        )
    ]
    with tempfile.TemporaryDirectory() as logs:
        for count in WORKER_COUNTS:
            ports = [portpicker.pick_unused_port() for _ in range(count)]
            log_paths = [Path(logs) / f"worker-{p}.log" for p in ports]
            workers = [start_loopback(p, log) for p, log in zip(ports, log_paths, strict=True)]
            try:
                runtime.use_workers([WorkerAddress("127.0.0.1", p) for p in ports])
                seconds = statistics.median(_round_seconds(ctx, settings, rounds))
            finally:
                runtime.use_workers(())
                for worker in workers:
                    worker.terminate()
                    worker.wait()
            # Per round, over the warm-up, the timed and the last rounds alike.
            traffic_mb = sum(map(_bytes_forwarded, log_paths)) / 1e6 / (rounds + 2)
            rows.extend(
                (
                    Row(
                        f"workers.round_s.{count}",
                        "7 workers",
                        f"round over {count} `fedtext worker`(s) on loopback",
                        seconds,
                        "s",
                        note=f"{seconds / floor:.2f}x the own worker; {len(CLIENTS)} clients, "
                        f"{at_once} at once per worker, all on this machine's cores",
                    ),
                    Row(
                        f"workers.traffic_mb.{count}",
                        "7 workers",
                        f"bytes to and from {count} worker(s) a round, all together",
                        traffic_mb,
                        "MB",
                        note=f"{traffic_mb / state_mb:.1f}x the model's weights",
                    ),
                )
            )
    rows.append(
        Row(
            "workers.state_mb",
            "7 workers",
            "the model's weights, as float32: the unit of what a round sends",
            state_mb,
            "MB",
        )
    )
    results.add(*rows)
