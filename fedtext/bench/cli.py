"""The command line, `python -m fedtext.bench`: runs the chosen sections in turn and writes
the outputs after each."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from fedtext.bench.attacks import run_attacks
from fedtext.bench.classroom import run_classroom
from fedtext.bench.communication import run_communication
from fedtext.bench.engine import run_generation, run_overhead_and_scaling
from fedtext.bench.finetune import run_coldstart, run_memory
from fedtext.bench.learning import run_learning
from fedtext.bench.machine import ForeignLoad, machine_meta
from fedtext.bench.page import run_page
from fedtext.bench.privacy import run_privacy
from fedtext.bench.report import last_document, previous_values, write_outputs
from fedtext.bench.results import OUT_DIR, ROOT, SECTIONS, Results, Settings
from fedtext.bench.workers import run_workers


def random_base_model(directory: Path) -> Path:
    """A freshly built full-size model: timings do not depend on trained weights."""
    import tensorflow as tf

    from fedtext.config import ModelConfig
    from fedtext.model.keras_model import build_model, save_weights

    if not (directory / "weights.npz").exists():
        tf.keras.utils.set_random_seed(0)
        save_weights(build_model(ModelConfig()), ModelConfig(), directory)
    return directory


def run(settings: Settings, update_readme: bool = False) -> Results:
    from fedtext.distribution import runtime
    from fedtext.text import plays

    results, ctx = Results(settings), {}
    meta = machine_meta(settings)
    last = last_document(settings.out_dir)
    previous = previous_values(settings.out_dir, meta["machine"])
    foreign = ForeignLoad()
    steps: list[tuple[set[str], Callable[[], None]]] = [
        ({"overhead", "scaling"}, lambda: run_overhead_and_scaling(ctx, settings, results)),
        ({"generation"}, lambda: run_generation(settings, results)),
        ({"learning", "federation"}, lambda: run_learning(ctx, settings, results)),
        ({"coldstart"}, lambda: run_coldstart(settings, results)),
        ({"memory"}, lambda: run_memory(settings, results)),
        ({"page"}, lambda: run_page(settings, results)),
        ({"privacy"}, lambda: run_privacy(ctx, settings, results)),
        ({"workers"}, lambda: run_workers(ctx, settings, results)),
        ({"communication"}, lambda: run_communication(ctx, settings, results)),
        ({"attacks"}, lambda: run_attacks(ctx, settings, results)),
        ({"classroom"}, lambda: run_classroom(settings, results)),
    ]
    try:
        data_sections = {
            *("overhead", "scaling", "learning", "federation", "privacy", "workers"),
            *("communication", "attacks"),
        }
        if data_sections & set(settings.sections):
            ctx["train"], ctx["test"] = plays.load_client_data()
        for sections, step in steps:
            if sections & set(settings.sections):
                print(f"[{', '.join(sorted(sections))}]", flush=True)
                results.step = tuple(sorted(sections & set(settings.sections)))
                step()
                meta.update(foreign.summary(), load_avg_1m_end=os.getloadavg()[0])
                write_outputs(results, meta, previous, final=False, last=last)
    finally:
        runtime.shutdown()  # the in-process TFF worker; subprocesses stop their own
        foreign.stop()
    meta.update(foreign.summary(), load_avg_1m_end=os.getloadavg()[0])
    if meta["foreign_cores_mean"] > 0.2:
        print(
            f"warning: other processes used {meta['foreign_cores_mean']:.1f} cores on average "
            f"during this run: {meta['competing_jobs']}",
            flush=True,
        )
    write_outputs(results, meta, previous, update_readme=update_readme, last=last)
    return results


def build_parser() -> argparse.ArgumentParser:
    description = sys.modules[__package__].__doc__  # fedtext.bench's, as before the split
    parser = argparse.ArgumentParser(prog="python -m fedtext.bench", description=description)
    parser.add_argument(
        "--only",
        default=",".join(SECTIONS),
        help=f"comma-separated sections to run, of: {', '.join(SECTIONS)}",
    )
    parser.add_argument("--skip", default="", help="comma-separated sections to leave out")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="one repeat, short sweeps, 2 learning rounds, a 4-round federation: a smoke test",
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds per scaling point")
    parser.add_argument("--overhead-repeats", type=int, default=5)
    parser.add_argument(
        "--base",
        type=Path,
        default=None,
        help="base model directory (default: the shipped Dickens model, or an "
        "untrained full-size one while that is missing)",
    )
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    parser.add_argument(
        "--update-readme",
        action="store_true",
        help="also put the table between the bench markers of docs/benchmarks.md",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from fedtext.distribution import runtime
    from fedtext.model.weights import WEIGHTS_FILE, base_model_dir

    args = build_parser().parse_args(argv)
    runtime.stop_on_sigterm()  # a killed benchmark stops its TFF worker too
    sections = [s.strip() for s in args.only.split(",") if s.strip()]
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    unknown = (set(sections) | skip) - set(SECTIONS)
    if unknown:
        print(f"bench: unknown section(s) {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    base, random_weights = args.base, False
    if base is None:
        base = base_model_dir()
        if not (base / WEIGHTS_FILE).exists():
            base = random_base_model(ROOT / ".cache" / "bench-random-base")
            random_weights = True
            print(
                f"bench: no model at {base_model_dir()}; timing an untrained full-size model",
                flush=True,
            )
    # Subprocesses (the command line, the page) must load the same base model.
    os.environ["FEDTEXT_BASE_MODEL"] = str(Path(base).resolve())
    quick = args.quick
    settings = Settings(
        base_dir=Path(base).resolve(),
        out_dir=args.out,
        sections=tuple(s for s in SECTIONS if s in sections and s not in skip),
        quick=quick,
        repeats=1 if quick else args.repeats,
        overhead_repeats=1 if quick else args.overhead_repeats,
        random_weights=random_weights,
    )
    run(settings, update_readme=args.update_readme)
    return 0
