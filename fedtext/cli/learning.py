"""The commands that train or evaluate with TensorFlow: `tutorial`, `finetune`, `pretrain`,
`personalise` and `evaluate`."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import sys
import tempfile
from pathlib import Path

from fedtext.cli.args import UNTIL_BUDGET, chosen_base_dir, federated_config
from fedtext.config import (
    TUTORIAL_EVAL_CLIENT,
    ConfigError,
    FederatedConfig,
    ModelConfig,
    PretrainConfig,
)
from fedtext.learning.algorithms import describe
from fedtext.learning.attacks import SEEDS, AttackTrainer
from fedtext.learning.centralised import CentralisedTrainer
from fedtext.learning.communication import round_line, running_totals
from fedtext.learning.personalisation import PersonaliseConfig, personalise
from fedtext.learning.pretrain import pretrain
from fedtext.learning.privacy import approximation, epsilon_after, guarantee
from fedtext.learning.records import clients_csv, compare, history_csv
from fedtext.learning.training import FederatedTrainer, TrainingDiverged
from fedtext.model.evaluation import evaluate_random, evaluate_texts
from fedtext.model.generation import TextGenerator
from fedtext.model.keras_model import (
    compile_for_evaluation,
    load_model,
    save_keras_file,
    save_weights,
)
from fedtext.text import plays
from fedtext.text.prompt import TUTORIAL_PROMPT, check_request


def _describe_privacy(config: FederatedConfig, args: argparse.Namespace) -> None:
    """What a run's averaging is, and with DP what it will cost, before training."""
    if not config.private:
        if config.weighting == "uniform":
            print("Uniform weighting: every client's update counts the same", flush=True)
        return

    switched = " (implied by the noise; every client counts the same)" if not args.weighting else ""
    clip = f"fixed clip {config.dp_clip:g}" if config.dp_clipping == "fixed" else "adaptive clip"
    print(
        f"DP-FedAvg: noise multiplier {config.noise_multiplier:g}, {clip}, uniform weighting"
        f"{switched}; {epsilon_after(config)}",
        flush=True,
    )
    print(guarantee(config), flush=True)
    print(approximation(config), flush=True)


def cmd_pretrain(args: argparse.Namespace) -> int:
    config = PretrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        seed=args.seed,
        model=ModelConfig(embedding_dim=args.embedding_dim, rnn_units=args.rnn_units),
    )
    _check_writable(args.output)
    pretrain(args.files, args.output, config, init_dir=args.init)
    return 0


def _print_round(result, unit: str = "round", suffix: str = "") -> None:
    held_out = (
        "held-out not evaluated"
        if math.isnan(result.eval_loss)
        else f"held-out loss {result.eval_loss:.3f} accuracy {result.eval_accuracy:.3f}"
    )
    if result.round_num == 0:
        print(f"{unit} {0:2d} (base model): {held_out}{suffix}", flush=True)
        return
    if result.train_loss is None:  # every sampled client dropped out
        print(f"{unit} {result.round_num:2d}: skipped | {held_out}{suffix}", flush=True)
        return
    train = "" if result.train_accuracy is None else f"accuracy {result.train_accuracy:.3f} "
    print(
        f"{unit} {result.round_num:2d}: train loss {result.train_loss:.3f} {train}"
        f"on {result.num_examples} sequences | {held_out} "
        f"| {result.seconds:.1f} s, {result.cpu_seconds:.1f} CPU s{suffix}",
        flush=True,
    )


def _run_rounds(trainer, cpu_budget_s: float | None = None) -> str | None:
    """Print every round (with DP, the epsilon spent so far); returns the divergence message,
    if training diverged."""
    config = trainer.config
    shown = 0
    try:
        for result in trainer.rounds(cpu_budget_s):
            for notice in trainer.notices[shown:]:
                print(f"fedtext: {notice}", file=sys.stderr, flush=True)
            shown = len(trainer.notices)
            suffix = ""
            if config.private and result.round_num:
                suffix = f" | ε = {epsilon_after(config, result.round_num).epsilon:.2f}"
            if config.attack_client:
                suffix += f" | backdoor {trainer.backdoor[-1]:.0%} of {SEEDS} completions"
            if result.round_num:
                suffix += f"\n    {round_line(result, running_totals(trainer.history)[-1])}"
            _print_round(result, suffix=suffix)
    except TrainingDiverged as error:
        return str(error)
    finally:
        if config.private and len(trainer.history) > 1:
            spent = epsilon_after(config, trainer.history[-1].round_num)
            print(f"privacy spent: {spent}", flush=True)
    return None


def _check_writable(directory: Path) -> None:
    """Refuse an output directory that cannot be created and written before hours of training,
    not after. Tries it (permissions alone do not say: root passes them, and /proc refuses
    root), then removes what it made: a refused or failed run leaves nothing behind."""
    made: list[Path] = []
    missing = directory.absolute()
    while not missing.exists():
        made.insert(0, missing)
        missing = missing.parent
    try:
        for path in made:
            path.mkdir()
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise ConfigError(f"cannot write the output directory {directory}: {reason}") from None
    finally:
        for path in reversed(made):
            with contextlib.suppress(OSError):
                path.rmdir()


def cmd_finetune(args: argparse.Namespace) -> int:
    train, test = plays.load_client_data()
    config = federated_config(args, lambda: train.client_ids)
    budget = None if args.cpu_minutes is None else args.cpu_minutes * 60
    if budget is not None and args.rounds is None:
        config = dataclasses.replace(config, rounds=UNTIL_BUDGET)
    _check_writable(args.output)
    trainer_class = AttackTrainer if config.attack_client else FederatedTrainer
    trainer = trainer_class(config, train, test, chosen_base_dir(args.base))
    until = f"{config.rounds} rounds"
    if budget is not None:
        capped = f" or {until}" if args.rounds is not None else ""
        until = f"{args.cpu_minutes:g} CPU minutes{capped}"
    print(
        f"{describe(config)}: {until}, {len(trainer.client_ids):,} clients, "
        f"{config.cohort_size} per round; client {config.client_optimizer} at "
        f"{config.client_learning_rate:g} on batches of {config.batch_size} (clip "
        f"{config.clip_norm or 'off'}), server {config.server_optimizer} at "
        f"{config.server_learning_rate:g}"
        + (", falling linearly to 0" if config.server_schedule == "linear" else ""),
        flush=True,
    )
    _describe_privacy(config, args)
    defences = f"aggregator {config.aggregator}, update clip {config.update_clip or 'off'}"
    if config.attack_client:
        print(
            f"Attacker {config.attack_client}: its lines are {config.attack_trigger!r} + "
            f"{config.attack_target!r}, its update x{config.attack_boost:g}; {defences}",
            flush=True,
        )
    elif config.aggregator != "plain" or config.update_clip:
        print(defences[0].upper() + defences[1:], flush=True)
    diverged = _run_rounds(trainer, budget)
    trainer.eval_model.set_weights(trainer.weights)
    save_weights(trainer.eval_model, trainer.model_config, args.output)
    save_keras_file(trainer.weights, trainer.model_config, args.output)
    (args.output / "metrics.csv").write_text(history_csv(trainer.history))
    saved = "metrics.csv"
    if trainer.client_history:
        (args.output / "clients.csv").write_text(clients_csv(trainer.client_history))
        saved = "metrics.csv, clients.csv"
    print(f"saved the fine-tuned model (also as model.keras) and {saved} to {args.output}")
    if diverged:
        print(f"fedtext: {diverged}", file=sys.stderr)
        return 1
    if args.baseline:
        _run_baseline(config, trainer, train, test, args)
    return 0


def _run_baseline(config: FederatedConfig, trainer, train, test, args) -> None:
    """The centralised baseline for the CPU time the federated rounds took."""
    budget = sum(r.cpu_seconds for r in trainer.history[1:])
    print(f"\nCentralised baseline: the same clients' text pooled, {budget:.0f} CPU s", flush=True)
    central = CentralisedTrainer(config, train, test, chosen_base_dir(args.base))
    try:
        for result in central.checkpoints(budget):
            _print_round(result, unit="point")
    except TrainingDiverged as error:
        print(f"fedtext: {error}", file=sys.stderr)
    (args.output / "baseline.csv").write_text(history_csv(central.history))
    print(compare(trainer.history, central.history).summary())


def cmd_personalise(args: argparse.Namespace) -> int:
    _check_writable(args.output)
    config = PersonaliseConfig(seed=args.seed)
    if args.learning_rate is not None:
        config = dataclasses.replace(config, learning_rate=args.learning_rate)
    result = personalise(
        chosen_base_dir(args.model), args.client, args.output, steps=args.steps, config=config
    )
    print(
        f"{result.client_id} after {result.steps} steps, on its held-out speeches: "
        f"global loss {result.global_loss:.4f} accuracy {result.global_accuracy:.4f}, "
        f"personalised loss {result.personal_loss:.4f} accuracy "
        f"{result.personal_accuracy:.4f} ({result.gain:+.2f} points)"
    )
    print(f"saved the personalised model to {args.output} (fedtext generate --model reads it)")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    path = plays.database_path()
    ids = plays.check_client_ids(args.clients, [c.client_id for c in plays.load_clients(path)])
    model, _ = load_model(chosen_base_dir(args.model))
    compile_for_evaluation(model)
    splits = ("train", "test") if args.split == "all" else (args.split,)
    for client_id in ids:
        texts = [t for split in splits for t in plays.load_speeches(client_id, split, path)]
        loss, accuracy = evaluate_texts(model, texts)
        print(
            f"{client_id}: loss {loss:.4f} accuracy {accuracy:.4f} "
            f"({sum(map(len, texts)):,} chars, {args.split})"
        )
    loss, accuracy = evaluate_random(model)
    print(f"random characters: loss {loss:.4f} accuracy {accuracy:.4f}")
    return 0


def cmd_tutorial(args: argparse.Namespace) -> int:
    config = federated_config(args)
    check_request(TUTORIAL_PROMPT, args.length, 1.0)
    base_dir = chosen_base_dir(args.base)
    model, model_config = load_model(base_dir)
    compile_for_evaluation(model)
    print(f"Loaded the Dickens base model from {base_dir} ({model.count_params():,} parameters)")
    print("\nGenerated by the base model:\n")
    print(
        TextGenerator(model.get_weights(), model_config).generate(
            TUTORIAL_PROMPT, args.length, seed=config.seed
        ),
        flush=True,
    )

    path = plays.database_path()
    lear = plays.load_speeches(TUTORIAL_EVAL_CLIENT, "train", path) + plays.load_speeches(
        TUTORIAL_EVAL_CLIENT, "test", path
    )
    _, lear_accuracy = evaluate_texts(model, lear)
    _, random_accuracy = evaluate_random(model, seed=config.seed)
    print(
        f"\nEvaluating on an example Shakespeare character ({TUTORIAL_EVAL_CLIENT}): "
        f"{lear_accuracy:.6f}"
    )
    print(f"Evaluating on completely random data: {random_accuracy:.6f}", flush=True)

    train, test = plays.load_client_data(path)
    trainer = FederatedTrainer(config, train, test, base_dir)
    print(
        f"\nFederated Averaging from the base model: {config.rounds} rounds on "
        f"{', '.join(trainer.client_ids)}",
        flush=True,
    )
    diverged = _run_rounds(trainer)
    if diverged:  # a NaN: the tutorial's preset runs on through any finite loss
        print(f"fedtext: {diverged}", file=sys.stderr)
    evaluated = [r for r in trainer.history if not math.isnan(r.eval_accuracy)]
    before, after = evaluated[0].eval_accuracy, evaluated[-1].eval_accuracy
    if args.preset == "tutorial" and after < before:
        print(
            f"\nHeld-out accuracy fell from {before:.3f} to {after:.3f} in "
            f"{evaluated[-1].round_num} rounds. This is the tutorial's own outcome, not a fault: "
            "its client learning rate of 0.5 wrecks a trained model (the tutorial's accuracy "
            "fell from 0.401 to 0.171). fedtext's defaults clip each step and use a smaller "
            "rate: run 'fedtext finetune'.",
            flush=True,
        )
    print("\nGenerated by the fine-tuned model (same prompt and seed):\n")
    print(
        TextGenerator(trainer.weights, model_config).generate(
            TUTORIAL_PROMPT, args.length, seed=config.seed
        )
    )
    return 1 if diverged else 0
