"""The page's setup as plain values: bounds and defaults, quick picks of clients, averaging shares,
and the round trip to a shareable link's query parameters."""

from __future__ import annotations

import io
import math
import random
import zipfile
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from fedtext.config import (
    DEFAULT_CLIENTS,
    FederatedConfig,
)
from fedtext.model.weights import KERAS_FILE
from fedtext.options import OPTIONS
from fedtext.presets import LESSON_PRESETS, PRESETS
from fedtext.service.limits import ServiceLimits
from fedtext.text.plays import ClientInfo
from fedtext.text.vocab import unknown_chars

LIMITS = ServiceLimits()
_DEFAULT = FederatedConfig(client_ids=DEFAULT_CLIENTS)
# Learning rates offered on a log scale, as TensorFlow Playground does: a visitor picks a step.
# 0.5 is the tutorial's client rate.
RATES = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 0.5, 1.0, 3.0)
CLIP_NORMS = (0.0, 0.1, 0.3, 1.0, 3.0, 10.0)  # 0: off
BATCH_SIZES = (8, 16, 32, 64)  # 8 is the tutorial's
# DP-FedAvg's noise multiplier: 0 is off; about 1 buys a meaningful epsilon with many clients.
NOISES = (0.0, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0)
DP_CLIPS = (0.01, 0.03, 0.1, 0.3, 1.0)  # a fixed clip on each client's update (L2 norm)
PROXIMAL_STRENGTHS = (0.0, 0.01, 0.1, 1.0)  # FedProx's mu: Li et al. 2020 searched 0.001 to 1
COMPRESSION_BITS = (0, 2, 4, 8)  # 0: float32
CHANCES = (0.0, 0.1, 0.2, 0.3, 0.5)  # of dropping out, or lagging, per client and round
UPDATE_CLIPS = (0.0, 0.03, 0.1, 0.3, 1.0)  # 0: off; the defaults' updates are about 0.1
# An attacker's boost: 1 is an honest-sized update; clients / server rate replaces the model.
BOOSTS = (1.0, 3.0, 10.0, 30.0)
MAX_ATTACK_TEXT = 60  # characters of a trigger or a target, in the page and in a link
ATTACK_TEXTS = ("attack_trigger", "attack_target")


@dataclass(frozen=True)
class Bound:
    """A whole-number setting's range and default on the page."""

    low: int
    high: int
    default: int


BOUNDS = {
    "rounds": Bound(1, LIMITS.max_rounds, _DEFAULT.rounds),
    "batches_per_client": Bound(1, LIMITS.max_batches_per_client, _DEFAULT.batches_per_client),
    "clients_per_round": Bound(0, LIMITS.max_clients, _DEFAULT.clients_per_round),
    "seed": Bound(0, 9999, _DEFAULT.seed),
}
# Settings picked from a list: a link's value snaps to the nearest one offered; names are
# checked against fedtext.options' choices.
CHOICES: dict[str, tuple] = {
    **{o.field: o.choices for o in OPTIONS if o.link and o.choices},
    "client_learning_rate": RATES,
    "server_learning_rate": RATES,
    "clip_norm": CLIP_NORMS,
    "batch_size": BATCH_SIZES,
    "noise_multiplier": NOISES,
    "dp_clip": DP_CLIPS,
    "proximal_strength": PROXIMAL_STRENGTHS,
    "compression_bits": COMPRESSION_BITS,
    "dropout_chance": CHANCES,
    "straggler_chance": CHANCES,
    "update_clip": UPDATE_CLIPS,
    "attack_boost": BOOSTS,
}

# Short names in the link, one per FederatedConfig field the page sets (fedtext.options).
PARAMS = {o.field: o.link for o in OPTIONS if o.link}
RUN_PARAM = "run"
PRESET_PARAM = "preset"  # the preset a link was made from: the page names it and its lesson


def client_label(client: ClientInfo) -> str:
    """A client as the page lists it: name, play, speeches and text."""
    speeches = client.train_speeches + client.test_speeches
    return (
        f"{client.character.title()} · {client.play} · {speeches} speeches · "
        f"{client.train_chars / 1000:.1f}k chars"
    )


# The presets the page offers, "defaults" first (their names: ui.words.PRESET_LABELS).
PAGE_PRESETS = (
    "defaults",
    "tutorial",
    "fedavg",
    "fedavgm",
    "fedadam",
    *LESSON_PRESETS,
)


def preset_from_params(params: Mapping[str, str]) -> tuple[str, list[str]]:
    """The preset a link names ('defaults' if none), and a line if it names none the page has."""
    name = str(params.get(PRESET_PARAM, "")).strip()
    if not name:
        return "defaults", []
    if name in PAGE_PRESETS:
        return name, []
    return "defaults", [f"the link's {PRESET_PARAM}={name[:20]!r} is not a preset of this page"]


def preset_setup(name: str) -> dict[str, object]:
    """The page's setup for a preset ('defaults' or one of PRESETS), snapped to what the page
    offers; a preset without clients keeps the defaults'."""
    config = FederatedConfig(**{"client_ids": DEFAULT_CLIENTS, **PRESETS.get(name, {})})
    setup = {field: getattr(config, field) for field in PARAMS}
    setup["client_ids"] = list(config.client_ids)
    for field, options in CHOICES.items():
        setup[field] = nearest(options, setup[field])
    return setup


def nearest(options: tuple, value):
    """The option equal to `value`, else the closest number (on a log scale for rates)."""
    if isinstance(value, str):
        return value
    if value in options:  # the option itself: a link's "8" is 8.0, the option the int 8
        return options[options.index(value)]
    if options is RATES:
        return nearest_rate(value)
    return min(options, key=lambda option: abs(option - value))


def nearest_rate(value: float) -> float:
    """The offered rate closest to `value` on a log scale."""
    return min(RATES, key=lambda rate: abs(math.log(rate) - math.log(value)))


DEFAULT_SETUP: dict[str, object] = preset_setup("defaults")
# (client, server) optimizer kinds the page's service compiles at start, the defaults' first.
PREBUILT_PROCESSES = tuple(
    dict.fromkeys(
        (setup["client_optimizer"], setup["server_optimizer"])
        for setup in map(preset_setup, PAGE_PRESETS)
    )
)


def setup_to_params(setup: Mapping[str, object], preset: str = "defaults") -> dict[str, str]:
    """Query parameters for a setup started from a preset: the preset's name and what differs
    from it, so that `?preset=backdoor` typed by hand is the whole lesson."""
    base = preset_setup(preset)
    params = {} if preset == "defaults" else {PRESET_PARAM: preset}
    for field, name in PARAMS.items():
        value = setup[field]
        if value == base[field]:
            continue
        params[name] = (
            ",".join(value)
            if field == "client_ids"
            else f"{value:g}"
            if isinstance(value, float)
            else str(value)
        )
    return params


def setup_from_params(
    params: Mapping[str, str], known_ids: Collection[str]
) -> tuple[dict[str, object], list[str]]:
    """The setup a link describes, on top of its preset's (or the defaults), and a line for each
    value ignored."""
    setup = preset_setup(preset_from_params(params)[0])
    problems = []
    for field, name in PARAMS.items():
        if field in ATTACK_TEXTS:  # free text, whose spaces count: "O Romeo, " is a trigger
            if name not in params:
                continue
            text = str(params[name])[:MAX_ATTACK_TEXT]
            bad = unknown_chars(text)
            if bad:
                problems.append(f"the link's {name} has characters the model cannot write: {bad}")
            else:
                setup[field] = text  # "" too: a preset's trigger taken out
            continue
        text = str(params.get(name, "")).strip()
        if not text:
            continue
        if field == "attack_client":
            if text in known_ids:
                setup[field] = text
            else:
                problems.append(f"the link's attacker {text[:40]!r} is not a known client")
        elif field == "client_ids":
            ids = list(dict.fromkeys(i.strip() for i in text.split(",") if i.strip()))
            unknown = [i for i in ids if i not in known_ids]
            if unknown:
                more = f" and {len(unknown) - 3} more" if len(unknown) > 3 else ""
                problems.append(
                    f"the link names unknown clients, left out: {', '.join(unknown[:3])}{more}"
                )
            setup[field] = [i for i in ids if i in known_ids][: LIMITS.max_clients]
        elif field in BOUNDS:
            bound = BOUNDS[field]
            try:
                setup[field] = min(max(int(text), bound.low), bound.high)
            except ValueError:
                problems.append(f"the link's {name}={text[:20]!r} is not a whole number")
        elif isinstance(DEFAULT_SETUP[field], str):
            if text in CHOICES[field]:
                setup[field] = text
            else:
                problems.append(
                    f"the link's {name}={text[:20]!r} is not one of {', '.join(CHOICES[field])}"
                )
        else:
            try:
                value = float(text)
                zero_allowed = 0 in CHOICES[field]  # clipping's "off"
                if not math.isfinite(value) or value < 0 or (value == 0 and not zero_allowed):
                    raise ValueError
                setup[field] = nearest(CHOICES[field], value)
            except ValueError:
                problems.append(f"the link's {name}={text[:20]!r} is not a positive number")
    if setup["noise_multiplier"] > 0:  # differential privacy bounds every client's say alike
        setup["weighting"] = "uniform"
    if setup["attack_client"] and setup["attack_client"] not in setup["client_ids"]:
        setup["client_ids"] = [*setup["client_ids"], setup["attack_client"]]  # it must take part
    return setup, problems


def pick_biggest(clients: Sequence[ClientInfo], n: int) -> list[str]:
    """The ids of the n clients with the most training text."""
    return [c.client_id for c in sorted(clients, key=lambda c: -c.train_chars)[:n]]


def pick_random(clients: Sequence[ClientInfo], n: int, seed: int | None = None) -> list[str]:
    """n client ids drawn at random, in id order."""
    chosen = random.Random(seed).sample(list(clients), min(n, len(clients)))
    return sorted(c.client_id for c in chosen)


def pick_play(clients: Sequence[ClientInfo], play: str) -> list[str]:
    """Every character of one play, biggest talker first, up to the site's client limit."""
    return pick_biggest([c for c in clients if c.play == play], LIMITS.max_clients)


def sequences_per_round(
    client: ClientInfo,
    batches_per_client: int,
    batch_size: int,
    seq_length: int = _DEFAULT.seq_length,
) -> int:
    """Sequences a client trains on per round: its text cut like the engine's pipeline, capped.

    Each speech gains a newline; the ids are cut into chunks of seq_length + 1 and a final chunk
    of a single id is dropped; a round takes at most batches_per_client batches of batch_size.
    """
    ids = client.train_chars + client.train_speeches
    chunk = seq_length + 1
    chunks = ids // chunk + (ids % chunk > 1)
    return min(chunks, batches_per_client * batch_size)


def averaging_shares(
    clients: Sequence[ClientInfo],
    batches_per_client: int,
    batch_size: int,
    weighting: str = "weighted",
    noise_multiplier: float = 0.0,
) -> dict[str, float]:
    """Each client's share of the average when all take part. Weighted: TFF weights an update by
    the number of examples (sequences) it was trained on. Uniform, and always under
    differential privacy (noise above 0): one vote each."""
    if weighting == "uniform" or noise_multiplier > 0:
        return {c.client_id: 1 / len(clients) for c in clients}
    counts = {c.client_id: sequences_per_round(c, batches_per_client, batch_size) for c in clients}
    total = sum(counts.values()) or 1
    return {cid: n / total for cid, n in counts.items()}


def model_archive(
    directory: Path,
    names: Sequence[str] = (
        "weights.npz",
        "model.json",
        KERAS_FILE,
        "metrics.csv",
        "clients.csv",
    ),
) -> bytes:
    """A zip of a stored run's model files, ready for `fedtext generate --model`, and the model
    in Keras' format for `tf.keras.models.load_model` (written when the run was stored)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:  # npz is already compressed
        for name in names:
            if (directory / name).exists():
                archive.write(directory / name, f"fedtext-model/{name}")
    return buffer.getvalue()
