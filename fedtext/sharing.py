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

from fedtext.cli import TUTORIAL_CLIENTS
from fedtext.config import SERVER_OPTIMIZERS, FederatedConfig, ServerLimits
from fedtext.data import ClientInfo

LIMITS = ServerLimits()
_DEFAULT = FederatedConfig(client_ids=TUTORIAL_CLIENTS)
# Learning rates offered on a log scale, as TensorFlow Playground does: a visitor picks a step.
RATES = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0)


@dataclass(frozen=True)
class Bound:
    """A whole-number setting's range and default on the page."""

    low: int
    high: int
    default: int


BOUNDS = {
    # 8 rounds of the tutorial's two clients take about 2 minutes on 2 cores with the Dickens model.
    "rounds": Bound(1, LIMITS.max_rounds, 8),
    "batches_per_client": Bound(1, LIMITS.max_batches_per_client, _DEFAULT.batches_per_client),
    "clients_per_round": Bound(0, LIMITS.max_clients, 0),  # 0: every chosen client, every round
    "seed": Bound(0, 9999, 0),
}

DEFAULT_SETUP: dict[str, object] = {
    "client_ids": list(TUTORIAL_CLIENTS),
    "rounds": BOUNDS["rounds"].default,
    "client_learning_rate": _DEFAULT.client_learning_rate,
    "server_optimizer": _DEFAULT.server_optimizer,
    "server_learning_rate": _DEFAULT.server_learning_rate,
    "batches_per_client": BOUNDS["batches_per_client"].default,
    "clients_per_round": BOUNDS["clients_per_round"].default,
    "seed": BOUNDS["seed"].default,
}

# Short names in the link, one per FederatedConfig field the page sets.
PARAMS = {
    "client_ids": "clients",
    "rounds": "rounds",
    "client_learning_rate": "client_lr",
    "server_optimizer": "server",
    "server_learning_rate": "server_lr",
    "batches_per_client": "batches",
    "clients_per_round": "per_round",
    "seed": "seed",
}
RUN_PARAM = "run"


def nearest_rate(value: float) -> float:
    """The offered rate closest to `value` on a log scale."""
    return min(RATES, key=lambda rate: abs(math.log(rate) - math.log(value)))


def setup_to_params(setup: Mapping[str, object]) -> dict[str, str]:
    """Query parameters for a setup; defaults are left out to keep links short."""
    params = {}
    for field, name in PARAMS.items():
        value = setup[field]
        if value == DEFAULT_SETUP[field]:
            continue
        params[name] = ",".join(value) if field == "client_ids" else f"{value:g}" if isinstance(
            value, float) else str(value)
    return params


def setup_from_params(
    params: Mapping[str, str], known_ids: Collection[str]
) -> tuple[dict[str, object], list[str]]:
    """The setup a link describes, on top of the defaults, and a line for each value ignored."""
    setup = dict(DEFAULT_SETUP)
    problems = []
    for field, name in PARAMS.items():
        text = str(params.get(name, "")).strip()
        if not text:
            continue
        if field == "client_ids":
            ids = list(dict.fromkeys(i.strip() for i in text.split(",") if i.strip()))
            unknown = [i for i in ids if i not in known_ids]
            if unknown:
                more = f" and {len(unknown) - 3} more" if len(unknown) > 3 else ""
                problems.append(f"the link names unknown clients, left out: "
                                f"{', '.join(unknown[:3])}{more}")
            setup[field] = [i for i in ids if i in known_ids][: LIMITS.max_clients]
        elif field == "server_optimizer":
            if text in SERVER_OPTIMIZERS:
                setup[field] = text
            else:
                problems.append(f"the link's server optimizer {text!r} is not one of "
                                f"{', '.join(SERVER_OPTIMIZERS)}")
        elif field in BOUNDS:
            bound = BOUNDS[field]
            try:
                setup[field] = min(max(int(text), bound.low), bound.high)
            except ValueError:
                problems.append(f"the link's {name}={text[:20]!r} is not a whole number")
        else:
            try:
                value = float(text)
                if not math.isfinite(value) or value <= 0:
                    raise ValueError
                setup[field] = nearest_rate(value)
            except ValueError:
                problems.append(f"the link's {name}={text[:20]!r} is not a positive number")
    return setup, problems


def pick_biggest(clients: Sequence[ClientInfo], n: int) -> list[str]:
    """The ids of the n clients with the most training text."""
    return [c.client_id for c in sorted(clients, key=lambda c: -c.train_chars)[:n]]


def pick_random(clients: Sequence[ClientInfo], n: int, seed: int | None = None) -> list[str]:
    """n client ids drawn at random, in id order."""
    chosen = random.Random(seed).sample(list(clients), min(n, len(clients)))
    return sorted(c.client_id for c in chosen)


def pick_play(clients: Sequence[ClientInfo], play: str) -> list[str]:
    """Every character of one play, biggest talker first, up to the server's client limit."""
    return pick_biggest([c for c in clients if c.play == play], LIMITS.max_clients)


def sequences_per_round(client: ClientInfo, batches_per_client: int,
                        batch_size: int = _DEFAULT.batch_size,
                        seq_length: int = _DEFAULT.seq_length) -> int:
    """Sequences a client trains on per round: its text cut like the engine's pipeline, capped.

    Each speech gains a newline; the ids are cut into chunks of seq_length + 1 and a final chunk
    of a single id is dropped; a round takes at most batches_per_client batches of batch_size.
    """
    ids = client.train_chars + client.train_speeches
    chunk = seq_length + 1
    chunks = ids // chunk + (ids % chunk > 1)
    return min(chunks, batches_per_client * batch_size)


def averaging_shares(clients: Sequence[ClientInfo], batches_per_client: int) -> dict[str, float]:
    """Each client's share of the weighted average when all take part: TFF weights an update by
    the number of examples (sequences) it was trained on."""
    counts = {c.client_id: sequences_per_round(c, batches_per_client) for c in clients}
    total = sum(counts.values()) or 1
    return {cid: n / total for cid, n in counts.items()}


def model_archive(directory: Path, names: Sequence[str] = ("weights.npz", "model.json",
                                                               "metrics.csv")) -> bytes:
    """A zip of a stored run's model files, ready for `fedtext generate --model`."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:  # npz is already compressed
        for name in names:
            if (directory / name).exists():
                archive.write(directory / name, f"fedtext-model/{name}")
    return buffer.getvalue()
