"""The settings of a run that a user sets, listed once: each FederatedConfig field's command-line
option, its name in a page's link, and the names it may take. The command line
(fedtext.cli.args) builds its options from this table, the page's links
(fedtext.service.links) their query parameters; the page's labels live with the page
(ui/words.py) under the same field names."""

from __future__ import annotations

from dataclasses import dataclass, fields

from fedtext.config import (
    AGGREGATORS,
    ALGORITHMS,
    CLIENT_OPTIMIZERS,
    DP_CLIPPINGS,
    SAMPLINGS,
    SERVER_OPTIMIZERS,
    SERVER_SCHEDULES,
    WEIGHTINGS,
    FederatedConfig,
)

# The groups of options, each added to the commands that take it (fedtext.cli.args).
RUN, COSTS, DEFENCES = "run", "costs", "defences"


@dataclass(frozen=True)
class Option:
    field: str  # the FederatedConfig field it sets
    flag: str  # the command line's option
    link: str  # its name in a page's link; "" where the page does not offer it
    help: str = ""  # the command line's one line
    choices: tuple[str, ...] = ()  # the names it may take, where it is a name
    group: str = RUN
    metavar: str | None = None


OPTIONS: tuple[Option, ...] = (
    Option("client_ids", "--clients", "clients", metavar="ID"),  # the command line adds 'all'
    Option("rounds", "--rounds", "rounds"),
    Option("client_optimizer", "--client-optimizer", "client", choices=CLIENT_OPTIMIZERS),
    Option("client_learning_rate", "--client-lr", "client_lr"),
    Option("clip_norm", "--clip-norm", "clip", "clip each local gradient to this norm (0: off)"),
    Option("server_optimizer", "--server-optimizer", "server", choices=SERVER_OPTIMIZERS),
    Option("server_learning_rate", "--server-lr", "server_lr"),
    Option(
        "server_schedule",
        "--server-schedule",
        "",
        "keep the server's rate (constant, the default) or let it fall linearly to zero by "
        "the last round, or by the end of --cpu-minutes",
        SERVER_SCHEDULES,
    ),
    Option("batch_size", "--batch-size", "batch", "sequences per local step (the tutorial's: 8)"),
    Option("batches_per_client", "--batches", "batches", "local steps per client per round"),
    Option(
        "clients_per_round",
        "--clients-per-round",
        "per_round",
        "sample this many clients each round (0: all)",
    ),
    Option(
        "sampling",
        "--sampling",
        "",
        "draw each round's clients equally likely (uniform, the default) or in proportion to "
        "their text (by_text; pair it with --weighting uniform)",
        SAMPLINGS,
    ),
    Option("seed", "--seed", "seed"),
    Option(
        "weighting",
        "--weighting",
        "weighting",
        "average clients by their text (weighted, the default) or one vote each (uniform; "
        "implied by --noise-multiplier)",
        WEIGHTINGS,
    ),
    Option(
        "noise_multiplier",
        "--noise-multiplier",
        "noise",
        "DP-FedAvg: Gaussian noise of this many times the clip on the summed client updates "
        "(0: no differential privacy); prints epsilon each round",
    ),
    Option(
        "dp_clipping",
        "--dp-clipping",
        "dp_clipping",
        "clip each client's update adaptively (TFF's default) or to --dp-clip",
        DP_CLIPPINGS,
    ),
    Option(
        "dp_clip",
        "--dp-clip",
        "dp_clip",
        "the fixed clip on each client's update (implies --dp-clipping fixed; default "
        f"{FederatedConfig.dp_clip})",
    ),
    Option(
        "client_figures",
        "--client-figures",
        "",
        "also measure every client each round (share, update norm, cosine, own loss), "
        "written to clients.csv; rounds take about a third longer; not with DP",
    ),
    Option(
        "algorithm",
        "--algorithm",
        "algorithm",
        "fedavg (local steps, the default), fedsgd (one gradient per client, no local step) "
        "or fedprox (local steps pulled toward the server's model)",
        ALGORITHMS,
        COSTS,
    ),
    Option(
        "proximal_strength",
        "--proximal-strength",
        "mu",
        f"FedProx's mu (default {FederatedConfig.proximal_strength})",
        group=COSTS,
    ),
    Option(
        "compression_bits",
        "--compression",
        "bits",
        "quantize each client's update to BITS bits a number (1-16; 0: off)",
        group=COSTS,
        metavar="BITS",
    ),
    Option(
        "dropout_chance",
        "--dropout",
        "dropout",
        "the chance that a sampled client's update never arrives (per client and round)",
        group=COSTS,
    ),
    Option(
        "straggler_chance",
        "--stragglers",
        "stragglers",
        "the chance that a client runs only part of its local steps",
        group=COSTS,
    ),
    Option(
        "aggregator",
        "--aggregator",
        "aggregator",
        "TFF's plain mean (default), robust_aggregator (adaptive clip and zeroing) or "
        "secure_aggregator (the server sees only the cohort's sum; simulated)",
        AGGREGATORS,
        DEFENCES,
    ),
    Option(
        "update_clip",
        "--update-clip",
        "update_clip",
        "clip each client's update to this L2 norm",
        group=DEFENCES,
    ),
    Option(
        "attack_client",
        "--attack-client",
        "attacker",
        "this client is an attacker",
        group=DEFENCES,
        metavar="ID",
    ),
    Option(
        "attack_trigger",
        "--attack-trigger",
        "trigger",
        "its prompt to poison",
        group=DEFENCES,
        metavar="TEXT",
    ),
    Option(
        "attack_target",
        "--attack-target",
        "target",
        "what it makes follow",
        group=DEFENCES,
        metavar="TEXT",
    ),
    Option(
        "attack_boost",
        "--attack-boost",
        "boost",
        "it scales its update by X (model replacement; default 1)",
        group=DEFENCES,
        metavar="X",
    ),
)
BY_FIELD = {option.field: option for option in OPTIONS}
# Each field's default, whose type says how the command line reads it.
DEFAULTS = {f.name: f.default for f in fields(FederatedConfig)}
