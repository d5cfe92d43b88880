"""The command line's arguments: one parser, and the settings a run shares with the page and the
link, read into a `FederatedConfig`."""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
from pathlib import Path

from fedtext.config import (
    AGGREGATORS,
    DEFAULT_CLIENTS,
    TUTORIAL_EVAL_CLIENT,
    ConfigError,
    FederatedConfig,
    ModelConfig,
    PretrainConfig,
)
from fedtext.distribution.addresses import parse_workers
from fedtext.model.weights import base_model_dir
from fedtext.options import COSTS, DEFAULTS, DEFENCES, OPTIONS, RUN, Option
from fedtext.presets import PRESETS, WHOLE_FEDERATION_PRESETS

DESCRIPTION = "Federated learning on text: a Dickens model fine-tuned on Shakespeare with TFF."
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
        "--cpu-minutes; the lessons': fedsgd, compressed, unreliable, secure, backdoor, "
        "robust, in docs/communication.md and docs/attacks.md)",
    )
    for option in OPTIONS:
        if option.group in (RUN, COSTS):
            _add_option(parser, option)
    parser.add_argument("--base", type=Path, default=None, help="base model directory")
    parser.add_argument(
        "--workers",
        type=_workers,
        metavar="HOST:PORT,...",
        help="spread each round's clients over these `fedtext worker`s (default: "
        "$FEDTEXT_WORKERS, else one worker on this machine); CPU seconds then count this "
        "process only",
    )


def _add_attack_args(parser: argparse.ArgumentParser) -> None:
    """The server's aggregator and defences, and a poisoned character (docs/attacks.md)."""
    for option in OPTIONS:
        if option.group == DEFENCES:
            _add_option(parser, option)


def _add_option(parser: argparse.ArgumentParser, option: Option) -> None:
    """One FederatedConfig setting as an option, read as its default's type says."""
    default = DEFAULTS[option.field]
    settings = {"dest": option.field, "help": option.help or None, "metavar": option.metavar}
    if option.field == "client_ids":
        settings.update(
            dest="clients",
            nargs="+",
            help=f"client ids (see 'fedtext data'), or '{ALL_CLIENTS}' for the whole "
            "federation; default: the preset's, else the page's default clients",
        )
    elif isinstance(default, bool):
        settings.update(action="store_const", const=True)
        del settings["metavar"]
    elif option.choices:
        settings["choices"] = option.choices
    elif isinstance(default, float):
        settings["type"] = _float
    elif isinstance(default, int):
        settings["type"] = int
    parser.add_argument(option.flag, **settings)


def _workers(text: str):
    try:
        return parse_workers(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def federated_config(args: argparse.Namespace, all_ids=None) -> FederatedConfig:
    settings = dict(PRESETS[args.preset]) if args.preset else {}
    if args.clients == [ALL_CLIENTS]:
        settings["client_ids"] = tuple(all_ids() if all_ids else ())
    elif args.clients:
        settings["client_ids"] = tuple(args.clients)
    if args.preset in WHOLE_FEDERATION_PRESETS and not args.clients:
        settings["client_ids"] = tuple(all_ids() if all_ids else ())
    settings.setdefault("client_ids", DEFAULT_CLIENTS)
    # An option's dest is the FederatedConfig field it sets: what was given overrides.
    given = {f.name: getattr(args, f.name, None) for f in dataclasses.fields(FederatedConfig)}
    settings.update({k: v for k, v in given.items() if v is not None and k != "client_ids"})
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


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        """One line, not argparse's usage block."""
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="fedtext", description=DESCRIPTION)
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
    pretrain.add_argument("--embedding-dim", type=int, default=ModelConfig.embedding_dim)
    pretrain.add_argument("--rnn-units", type=int, default=ModelConfig.rnn_units)
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
    _add_attack_args(finetune)
    leak = sub.add_parser("leak", help="what one client's update tells the server it typed")
    leak.add_argument("client", metavar="CLIENT_ID")
    leak.add_argument("--model", type=Path, default=None, help="the model the round starts from")
    leak.add_argument(
        "--aggregator",
        choices=AGGREGATORS,
        default="plain",
        help="plain: the server sees the client's own update; secure or robust: the sum or "
        "clipped mean of a cohort's (--cohort)",
    )
    leak.add_argument(
        "--cohort", nargs="*", default=None, metavar="ID", help="the others in a secure round"
    )
    leak.add_argument("--rows", type=_count, default=20, help="characters to list (0: all)")

    communication = sub.add_parser(
        "communication",
        help="FedSGD against FedAvg with 1, 5 and 20 local steps: rounds and bytes to a target",
    )
    _add_federated_args(communication, preset=None)
    communication.add_argument(
        "--target-gain",
        type=_positive_float,
        default=2.0,
        help="the target: the base model's held-out accuracy plus this many points",
    )
    communication.add_argument(
        "--max-rounds", type=_count, default=100, help="each contender's most rounds"
    )
    communication.add_argument(
        "--steps",
        type=lambda text: tuple(_count(n) for n in text.split(",")),
        default=(0, 1, 5, 20),
        help="local steps to compare, comma-separated; 0 is FedSGD (default 0,1,5,20)",
    )
    communication.add_argument("--output", type=Path, help="write table.md and each run's CSV")

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


def chosen_base_dir(path: Path | None) -> Path:
    return path or base_model_dir()
