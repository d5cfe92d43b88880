"""Command line: `python -m fedtext {tutorial,data,pretrain,finetune,generate}`."""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from fedtext.config import (
    CLIENT_OPTIMIZERS,
    DEFAULT_CLIENTS,
    DP_CLIPPINGS,
    PRESETS,
    SAMPLINGS,
    SERVER_OPTIMIZERS,
    SERVER_SCHEDULES,
    TUTORIAL_EVAL_CLIENT,
    WEIGHTINGS,
    WHOLE_FEDERATION_PRESETS,
    ConfigError,
    FederatedConfig,
    PretrainConfig,
)

ALL_CLIENTS = "all"  # --clients all: the whole federation
UNTIL_BUDGET = 1_000_000  # the rounds of a run that --cpu-minutes ends


def _float(text: str) -> float:
    """Any float, NaN included: the config objects say in one line what is out of range."""
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None


def _positive_float(text: str) -> float:
    value = _float(text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


def _count(text: str) -> int:
    """A whole number of 0 or more, refused before anything loads."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _add_federated_args(parser: argparse.ArgumentParser, preset: str | None) -> None:
    """Every FederatedConfig setting as an option; unset ones come from the preset, if any,
    then from FederatedConfig's defaults."""
    parser.add_argument(
        "--preset",
        choices=tuple(PRESETS),
        default=preset,
        help="start from named settings (tutorial: TFF's tutorial as published; fedavg, "
        "fedavgm, fedadam: Reddi et al. 2021's Shakespeare settings; federation: every "
        "character, a cohort of 2 drawn by text each round, FedAdam; pair it with "
        "--cpu-minutes)",
    )
    parser.add_argument(
        "--clients",
        nargs="+",
        metavar="ID",
        help=f"client ids (see 'fedtext data'), or '{ALL_CLIENTS}' for the whole federation; "
        "default: the preset's, else the page's default clients",
    )
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--client-optimizer", choices=CLIENT_OPTIMIZERS)
    parser.add_argument("--client-lr", type=_float, dest="client_learning_rate")
    parser.add_argument(
        "--clip-norm", type=_float, help="clip each local gradient to this global norm (0: off)"
    )
    parser.add_argument("--server-optimizer", choices=SERVER_OPTIMIZERS)
    parser.add_argument("--server-lr", type=_float, dest="server_learning_rate")
    parser.add_argument(
        "--server-schedule",
        choices=SERVER_SCHEDULES,
        help="keep the server's rate (constant, the default) or let it fall linearly to zero "
        "by the last round, or by the end of --cpu-minutes",
    )
    parser.add_argument(
        "--batch-size", type=int, help="sequences per local step (the tutorial's: 8)"
    )
    parser.add_argument(
        "--batches", type=int, dest="batches_per_client", help="local steps per client per round"
    )
    parser.add_argument(
        "--clients-per-round", type=int, help="sample this many clients each round (0: all)"
    )
    parser.add_argument(
        "--sampling",
        choices=SAMPLINGS,
        help="draw each round's clients equally likely (uniform, the default) or in proportion "
        "to their text (by_text; pair it with --weighting uniform)",
    )
    parser.add_argument("--seed", type=int)
    parser.add_argument(
        "--weighting",
        choices=WEIGHTINGS,
        help="average clients by their text (weighted, the default) or one vote each "
        "(uniform; implied by --noise-multiplier)",
    )
    parser.add_argument(
        "--noise-multiplier",
        type=_float,
        help="DP-FedAvg: Gaussian noise of this many times the clip on the summed client "
        "updates (0: no differential privacy); prints epsilon each round",
    )
    parser.add_argument(
        "--dp-clipping",
        choices=DP_CLIPPINGS,
        help="clip each client's update adaptively (TFF's default) or to --dp-clip",
    )
    parser.add_argument(
        "--dp-clip",
        type=_float,
        help=f"the fixed clip on each client's update (implies --dp-clipping fixed; default "
        f"{FederatedConfig.dp_clip})",
    )
    parser.add_argument(
        "--client-figures",
        action="store_const",
        const=True,
        help="also measure every client each round (share, update norm, cosine, own loss), "
        "written to clients.csv; rounds take about a third longer; not with DP",
    )
    parser.add_argument("--base", type=Path, default=None, help="base model directory")
    parser.add_argument(
        "--workers",
        type=_workers,
        metavar="HOST:PORT,...",
        help="spread each round's clients over these `fedtext worker`s (default: "
        "$FEDTEXT_WORKERS, else one worker on this machine); CPU seconds then count this "
        "process only",
    )


def _workers(text: str):
    from fedtext.cluster import parse_workers

    try:
        return parse_workers(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


_CONFIG_ARGS = (
    "rounds",
    "client_optimizer",
    "client_learning_rate",
    "clip_norm",
    "server_optimizer",
    "server_learning_rate",
    "server_schedule",
    "batch_size",
    "batches_per_client",
    "clients_per_round",
    "sampling",
    "eval_every",
    "rounds_per_call",
    "seed",
    "weighting",
    "noise_multiplier",
    "dp_clipping",
    "dp_clip",
    "client_figures",
)


def _federated_config(args: argparse.Namespace, all_ids=None) -> FederatedConfig:
    settings = dict(PRESETS[args.preset]) if args.preset else {}
    if args.clients == [ALL_CLIENTS]:
        settings["client_ids"] = tuple(all_ids() if all_ids else ())
    elif args.clients:
        settings["client_ids"] = tuple(args.clients)
    if args.preset in WHOLE_FEDERATION_PRESETS and not args.clients:
        settings["client_ids"] = tuple(all_ids() if all_ids else ())
    settings.setdefault("client_ids", DEFAULT_CLIENTS)
    settings.update(
        {k: getattr(args, k) for k in _CONFIG_ARGS if getattr(args, k, None) is not None}
    )
    if settings.get("client_figures") and getattr(args, "rounds_per_call", None) is None:
        settings["rounds_per_call"] = 1  # each round's figures come back with it
    if getattr(args, "dp_clip", None) is not None:
        if args.dp_clipping == "adaptive":
            raise ConfigError("--dp-clip sets a fixed clip: leave out --dp-clipping adaptive")
        settings["dp_clipping"] = "fixed"
    if (settings.get("noise_multiplier") or 0) > 0 and getattr(args, "weighting", None) is None:
        # What a user asking for noise expects: DP-FedAvg, which weights clients equally
        # (announced by _describe_privacy). An explicit --weighting weighted is refused.
        settings["weighting"] = "uniform"
    return FederatedConfig(**settings)


def _describe_privacy(config: FederatedConfig, args: argparse.Namespace) -> None:
    """What a run's averaging is, and with DP what it will cost, before training."""
    if not config.private:
        if config.weighting == "uniform":
            print("Uniform weighting: every client's update counts the same", flush=True)
        return
    from fedtext.privacy import approximation, epsilon_after, guarantee

    switched = " (implied by the noise; every client counts the same)" if not args.weighting else ""
    clip = f"fixed clip {config.dp_clip:g}" if config.dp_clipping == "fixed" else "adaptive clip"
    print(
        f"DP-FedAvg: noise multiplier {config.noise_multiplier:g}, {clip}, uniform weighting"
        f"{switched}; {epsilon_after(config)}",
        flush=True,
    )
    print(guarantee(config), flush=True)
    print(approximation(config), flush=True)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        """One line, not argparse's usage block."""
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="fedtext", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    tutorial = sub.add_parser("tutorial", help="the TFF tutorial's flow, end to end")
    _add_federated_args(tutorial, preset="tutorial")
    tutorial.add_argument("--length", type=int, default=200)

    data = sub.add_parser("data", help="list the Shakespeare clients and their sizes")
    data.add_argument("query", nargs="*", help="words to search in play, character or id")
    data.add_argument("--sort", choices=("id", "size"), default="id")
    data.add_argument("--limit", type=_count, default=50, help="rows to show (0: all)")
    data.add_argument("--rebuild", action="store_true", help="rebuild the data cache")

    pretrain = sub.add_parser("pretrain", help="pre-train the base model on text files")
    pretrain.add_argument("files", nargs="+", type=Path)
    pretrain.add_argument("--output", type=Path, required=True)
    pretrain.add_argument("--epochs", type=int, default=PretrainConfig.epochs)
    pretrain.add_argument("--batch-size", type=int, default=PretrainConfig.batch_size)
    pretrain.add_argument("--learning-rate", type=_float, default=PretrainConfig.learning_rate)
    pretrain.add_argument("--embedding-dim", type=int, default=256)
    pretrain.add_argument("--rnn-units", type=int, default=1024)
    pretrain.add_argument("--init", type=Path, default=None, help="start from this model")
    pretrain.add_argument("--seed", type=int, default=0)

    finetune = sub.add_parser("finetune", help="federated fine-tuning; saves weights and CSV")
    _add_federated_args(finetune, preset=None)
    finetune.add_argument("--output", type=Path, required=True)
    finetune.add_argument("--eval-every", type=int, help="evaluate every N rounds (and the last)")
    finetune.add_argument(
        "--rounds-per-call",
        type=int,
        help="run this many rounds in one call to the TFF worker, so the server state crosses "
        "once per call (the same rounds; the federation preset's: 8)",
    )
    finetune.add_argument(
        "--cpu-minutes",
        type=_positive_float,
        help="stop after the last round that fits in this much training CPU time (this "
        "process and the TFF worker; evaluation not counted); --rounds, if given, still caps",
    )
    finetune.add_argument(
        "--baseline",
        action="store_true",
        help="then train centrally on the same clients' pooled text for the same CPU time",
    )

    evaluate = sub.add_parser("evaluate", help="a model's accuracy on characters' lines")
    evaluate.add_argument("clients", nargs="*", default=[TUTORIAL_EVAL_CLIENT], metavar="ID")
    evaluate.add_argument("--model", type=Path, default=None, help="model directory")
    evaluate.add_argument("--split", choices=("train", "test", "all"), default="all")

    generate = sub.add_parser("generate", help="sample text from a model")
    generate.add_argument("--model", type=Path, default=None, help="model directory")
    generate.add_argument("--prompt", default=None)
    generate.add_argument("--length", type=int, default=200)
    generate.add_argument("--temperature", type=_float, default=1.0)
    generate.add_argument("--seed", type=int, default=0)

    personalise = sub.add_parser(
        "personalise", help="fine-tune a model briefly on one character's lines"
    )
    personalise.add_argument("--model", type=Path, default=None, help="model directory")
    personalise.add_argument("--client", required=True, metavar="ID", help="the character")
    personalise.add_argument("--output", type=Path, required=True)
    personalise.add_argument("--steps", type=int, default=None, help="SGD steps (default 60)")
    personalise.add_argument("--learning-rate", type=_float, default=None)
    personalise.add_argument("--seed", type=int, default=0)

    worker = sub.add_parser(
        "worker", help="serve TFF rounds for another machine's 'finetune --workers'"
    )
    worker.add_argument("--port", type=int, required=True, help="port to listen on")
    worker.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default loopback; TFF's gRPC is plaintext: use a private "
        "network or a tunnel)",
    )
    worker.add_argument("--log", type=Path, default=None, help="the worker's log file")
    worker.add_argument(
        "--clients-at-once",
        type=int,
        default=len(os.sched_getaffinity(0)),
        help="clients the worker trains at once (default: one per core)",
    )
    return parser


def _base_dir(path: Path | None) -> Path:
    from fedtext.weights import base_model_dir

    return path or base_model_dir()


def cmd_data(args: argparse.Namespace) -> int:
    from fedtext import data

    path = data.database_path(rebuild=args.rebuild)
    clients = data.load_clients(path)
    info = data.load_info(path)
    train = sum(c.train_speeches for c in clients)
    test = sum(c.test_speeches for c in clients)
    pub = data.TFF_PUBLISHED
    print(f"{'':24}{'fedtext':>10}{'TFF':>10}")
    print(f"{'clients':24}{len(clients):>10,}{pub['clients']:>10,}")
    print(f"{'train examples':24}{train:>10,}{pub['train_examples']:>10,}")
    print(f"{'test examples':24}{test:>10,}{pub['test_examples']:>10,}")
    print(
        f"play-character pairs {info['play_character_pairs']:,}, "
        f"{info['dropped_single_speech']:,} dropped with a single speech; "
        f"{sum(c.train_chars + c.test_chars for c in clients):,} characters; "
        f"{sum(c.tutorial_would_drop for c in clients):,} clients have less than one "
        f"tutorial batch of training text (kept here, padded)"
    )
    shown = data.search_clients(clients, " ".join(args.query)) if args.query else clients
    if args.sort == "size":
        shown = sorted(shown, key=lambda c: -(c.train_chars + c.test_chars))
    if args.query and not shown:
        print(f"no client matches {' '.join(args.query)!r}")
        return 1
    limit = len(shown) if args.limit <= 0 else args.limit
    print(f"\n{'client id':48} {'speeches':>9} {'chars':>8}  play / character")
    for c in shown[:limit]:
        mark = " *" if c.tutorial_would_drop else ""
        print(
            f"{c.client_id:48} {c.train_speeches:>4}+{c.test_speeches:<4} "
            f"{c.train_chars + c.test_chars:>8,}  {c.play} / {c.character}{mark}"
        )
    if len(shown) > limit:
        print(f"... {len(shown) - limit} more (use --limit 0)")
    print("speeches: train+test; * the tutorial's pipeline would have dropped this client")
    return 0


def cmd_pretrain(args: argparse.Namespace) -> int:
    from fedtext.config import ModelConfig
    from fedtext.pretrain import pretrain

    config = PretrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        seed=args.seed,
        model=ModelConfig(embedding_dim=args.embedding_dim, rnn_units=args.rnn_units),
    )
    pretrain(args.files, args.output, config, init_dir=args.init)
    return 0


def _print_round(result, unit: str = "round", suffix: str = "") -> None:
    held_out = (
        "held-out not evaluated"
        if math.isnan(result.eval_loss)
        else f"held-out loss {result.eval_loss:.3f} accuracy {result.eval_accuracy:.3f}"
    )
    if result.round_num == 0:
        print(f"{unit} {0:2d} (base model): {held_out}", flush=True)
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
    from fedtext.training import TrainingDiverged

    config = trainer.config
    if config.private:
        from fedtext.privacy import epsilon_after
    shown = 0
    try:
        for result in trainer.rounds(cpu_budget_s):
            for notice in trainer.notices[shown:]:
                print(f"fedtext: {notice}", file=sys.stderr, flush=True)
            shown = len(trainer.notices)
            suffix = ""
            if config.private and result.round_num:
                suffix = f" | ε = {epsilon_after(config, result.round_num).epsilon:.2f}"
            _print_round(result, suffix=suffix)
    except TrainingDiverged as error:
        return str(error)
    finally:
        if config.private and len(trainer.history) > 1:
            spent = epsilon_after(config, trainer.history[-1].round_num)
            print(f"privacy spent: {spent}", flush=True)
    return None


def _check_writable(directory: Path) -> None:
    """Refuse an output directory that cannot be written before hours of training, not after;
    creates nothing."""
    from fedtext.config import ConfigError

    existing = directory.absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(
            f"cannot write the output directory {directory}: {existing} is not a writable directory"
        )


def cmd_finetune(args: argparse.Namespace) -> int:
    from fedtext import data
    from fedtext.model import save_weights
    from fedtext.runs import history_csv
    from fedtext.training import FederatedTrainer

    train, test = data.load_client_data()
    config = _federated_config(args, lambda: train.client_ids)
    budget = None if args.cpu_minutes is None else args.cpu_minutes * 60
    if budget is not None and args.rounds is None:
        config = dataclasses.replace(config, rounds=UNTIL_BUDGET)
    _check_writable(args.output)
    trainer = FederatedTrainer(config, train, test, _base_dir(args.base))
    until = f"{config.rounds} rounds"
    if budget is not None:
        capped = f" or {until}" if args.rounds is not None else ""
        until = f"{args.cpu_minutes:g} CPU minutes{capped}"
    print(
        f"Federated Averaging: {until}, {len(trainer.client_ids):,} clients, "
        f"{config.cohort_size} per round; client {config.client_optimizer} at "
        f"{config.client_learning_rate:g} on batches of {config.batch_size} (clip "
        f"{config.clip_norm or 'off'}), server {config.server_optimizer} at "
        f"{config.server_learning_rate:g}"
        + (", falling linearly to 0" if config.server_schedule == "linear" else ""),
        flush=True,
    )
    _describe_privacy(config, args)
    diverged = _run_rounds(trainer, budget)
    trainer.eval_model.set_weights(trainer.weights)
    save_weights(trainer.eval_model, trainer.model_config, args.output)
    (args.output / "metrics.csv").write_text(history_csv(trainer.history))
    saved = "metrics.csv"
    if trainer.client_history:
        from fedtext.runs import clients_csv

        (args.output / "clients.csv").write_text(clients_csv(trainer.client_history))
        saved = "metrics.csv, clients.csv"
    print(f"saved the fine-tuned model and {saved} to {args.output}")
    if diverged:
        print(f"fedtext: {diverged}", file=sys.stderr)
        return 1
    if args.baseline:
        _run_baseline(config, trainer, train, test, args)
    return 0


def _run_baseline(config: FederatedConfig, trainer, train, test, args) -> None:
    """The centralised baseline for the CPU time the federated rounds took."""
    from fedtext.centralised import CentralisedTrainer
    from fedtext.runs import compare, history_csv
    from fedtext.training import TrainingDiverged

    budget = sum(r.cpu_seconds for r in trainer.history[1:])
    print(f"\nCentralised baseline: the same clients' text pooled, {budget:.0f} CPU s", flush=True)
    central = CentralisedTrainer(config, train, test, _base_dir(args.base))
    try:
        for result in central.checkpoints(budget):
            _print_round(result, unit="point")
    except TrainingDiverged as error:
        print(f"fedtext: {error}", file=sys.stderr)
    (args.output / "baseline.csv").write_text(history_csv(central.history))
    print(compare(trainer.history, central.history).summary())


def cmd_generate(args: argparse.Namespace) -> int:
    from fedtext.prompt import TUTORIAL_PROMPT, check_request

    prompt = TUTORIAL_PROMPT if args.prompt is None else args.prompt
    check_request(prompt, args.length, args.temperature)  # fail before the model loads
    from fedtext.generation import load_generator  # NumPy only: no TensorFlow to wait for

    generator = load_generator(_base_dir(args.model))
    print(generator.generate(prompt, args.length, args.temperature, args.seed))
    return 0


def cmd_personalise(args: argparse.Namespace) -> int:
    import dataclasses

    from fedtext.personalisation import PersonaliseConfig, personalise

    _check_writable(args.output)
    config = PersonaliseConfig(seed=args.seed)
    if args.learning_rate is not None:
        config = dataclasses.replace(config, learning_rate=args.learning_rate)
    result = personalise(
        _base_dir(args.model), args.client, args.output, steps=args.steps, config=config
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
    from fedtext import data
    from fedtext.evaluation import evaluate_random, evaluate_texts
    from fedtext.model import compile_for_evaluation, load_model

    path = data.database_path()
    ids = data.check_client_ids(args.clients, [c.client_id for c in data.load_clients(path)])
    model, _ = load_model(_base_dir(args.model))
    compile_for_evaluation(model)
    splits = ("train", "test") if args.split == "all" else (args.split,)
    for client_id in ids:
        texts = [t for split in splits for t in data.load_speeches(client_id, split, path)]
        loss, accuracy = evaluate_texts(model, texts)
        print(
            f"{client_id}: loss {loss:.4f} accuracy {accuracy:.4f} "
            f"({sum(map(len, texts)):,} chars, {args.split})"
        )
    loss, accuracy = evaluate_random(model)
    print(f"random characters: loss {loss:.4f} accuracy {accuracy:.4f}")
    return 0


def cmd_tutorial(args: argparse.Namespace) -> int:
    from fedtext import data
    from fedtext.evaluation import evaluate_random, evaluate_texts
    from fedtext.generation import TextGenerator
    from fedtext.model import compile_for_evaluation, load_model
    from fedtext.prompt import TUTORIAL_PROMPT, check_request
    from fedtext.training import FederatedTrainer

    config = _federated_config(args)
    check_request(TUTORIAL_PROMPT, args.length, 1.0)
    base_dir = _base_dir(args.base)
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

    path = data.database_path()
    lear = data.load_speeches(TUTORIAL_EVAL_CLIENT, "train", path) + data.load_speeches(
        TUTORIAL_EVAL_CLIENT, "test", path
    )
    _, lear_accuracy = evaluate_texts(model, lear)
    _, random_accuracy = evaluate_random(model, seed=config.seed)
    print(
        f"\nEvaluating on an example Shakespeare character ({TUTORIAL_EVAL_CLIENT}): "
        f"{lear_accuracy:.6f}"
    )
    print(f"Evaluating on completely random data: {random_accuracy:.6f}", flush=True)

    train, test = data.load_client_data(path)
    trainer = FederatedTrainer(config, train, test, base_dir)
    print(
        f"\nFederated Averaging from the base model: {config.rounds} rounds on "
        f"{', '.join(trainer.client_ids)}",
        flush=True,
    )
    diverged = _run_rounds(trainer)
    if diverged:
        print(f"fedtext: {diverged}", file=sys.stderr)
        if args.preset == "tutorial":
            print(
                "This is the tutorial's own outcome: its client learning rate of 0.5 wrecks a "
                "trained model (the tutorial's accuracy fell from 0.401 to 0.171). fedtext's "
                "defaults clip each step and use a smaller rate: run 'fedtext finetune'.",
                file=sys.stderr,
            )
    print("\nGenerated by the fine-tuned model (same prompt and seed):\n")
    print(
        TextGenerator(trainer.weights, model_config).generate(
            TUTORIAL_PROMPT, args.length, seed=config.seed
        )
    )
    return 1 if diverged else 0


def cmd_worker(args: argparse.Namespace) -> int:
    from fedtext.data import cache_dir
    from fedtext.worker import serve

    if not 0 < args.port < 65536:
        raise ConfigError(f"--port {args.port} is not a port from 1 to 65535")
    if args.clients_at_once < 1:
        raise ConfigError(f"--clients-at-once {args.clients_at_once} must be at least 1")
    log_path = args.log or cache_dir() / f"worker-{args.port}.log"
    return serve(args.port, args.host, log_path, args.clients_at_once)


COMMANDS = {
    "tutorial": cmd_tutorial,
    "data": cmd_data,
    "pretrain": cmd_pretrain,
    "finetune": cmd_finetune,
    "evaluate": cmd_evaluate,
    "generate": cmd_generate,
    "personalise": cmd_personalise,
    "worker": cmd_worker,
}


def main(argv: Sequence[str] | None = None) -> int:
    from fedtext import runtime
    from fedtext.config import ConfigError
    from fedtext.corpus import CorpusError
    from fedtext.data import DataError
    from fedtext.prompt import PromptError
    from fedtext.weights import WeightsError
    from fedtext.worker import WorkerStartError

    args = build_parser().parse_args(argv)
    runtime.stop_on_sigterm()
    start = time.perf_counter()
    try:
        if args.command not in ("generate", "worker"):  # neither needs TensorFlow here
            runtime.import_tensorflow(quiet=True)
        if getattr(args, "workers", None):
            runtime.use_workers(args.workers)
            runtime.install()  # every worker answers, or one line names those that do not
        return COMMANDS[args.command](args)
    except (
        ConfigError,
        CorpusError,
        DataError,
        PromptError,
        WeightsError,
        runtime.WorkerError,
        WorkerStartError,
        FloatingPointError,
    ) as error:
        print(f"fedtext: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fedtext: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # the last line of defence: one line, no traceback
        if os.environ.get("FEDTEXT_DEBUG"):
            raise
        print(
            f"fedtext: unexpected {type(error).__name__}: {error} "
            "(FEDTEXT_DEBUG=1 shows the traceback)",
            file=sys.stderr,
        )
        return 1
    finally:
        runtime.shutdown()
        if os.environ.get("FEDTEXT_TIMING"):
            print(f"[{args.command} took {time.perf_counter() - start:.1f} s]", file=sys.stderr)
