"""Privacy: a DP-FedAvg round's cost against a plain uniform round in the same run, and the
memorisation probe's index build and latency for 1,000 generated characters."""

from __future__ import annotations

import time

from fedtext.bench.results import Results, Row, Settings, median

SECTION = "7 privacy"
NOISE_MULTIPLIER = 1.0  # TFF's tutorial's range; the cost does not depend on the value
PROBE_CHARS = 1000


def time_dp_rounds(ctx: dict, settings: Settings) -> dict:
    """Median wall time of a DP round and of a plain uniform round, the page's default setup
    otherwise, evaluation off, the two trainers' rounds interleaved so both see the same
    machine; each trainer's first round (TFF's one-off costs) is left out."""
    from fedtext.config import FederatedConfig
    from fedtext.learning.training import FederatedTrainer
    from fedtext.service.links import DEFAULT_SETUP

    repeats = 1 if settings.quick else settings.overhead_repeats
    plain = FederatedConfig(**{**DEFAULT_SETUP, "weighting": "uniform", "rounds": 1 + repeats})
    private = FederatedConfig(**{**plain.__dict__, "noise_multiplier": NOISE_MULTIPLIER})
    trainers = [
        FederatedTrainer(c, ctx["train"], ctx["test"], settings.base_dir) for c in (plain, private)
    ]
    for trainer in trainers:
        trainer.evaluate = lambda weights=None: (0.0, 0.0)  # the round alone
    rounds = [t.rounds() for t in trainers]
    times: list[list[float]] = [[], []]
    for round_num in range(1 + plain.rounds):
        for kind, iterator in enumerate(rounds):
            result = next(iterator)
            if round_num >= 2:  # 0 is the base model, 1 the warm-up
                times[kind].append(result.seconds)
    plain_s, dp_s = median(times[0]), median(times[1])
    return {
        "plain_s": plain_s,
        "dp_s": dp_s,
        "ratio": dp_s / plain_s,
        "paired_ratio": median([d / p for p, d in zip(*times, strict=True)]),
        "repeats": repeats,
        "clients": len(plain.client_ids),
    }


def probe_texts(database) -> dict[str, str]:
    """1,000 characters of three kinds: held-out Shakespeare (never trained on, but full of
    the plays' common phrases), a training passage copied whole, and random characters."""
    import random

    from fedtext.text.plays import load_speeches
    from fedtext.text.vocab import CHARS

    held_out = "\n".join(load_speeches("HAMLET_HAMLET", "test", database))[:PROBE_CHARS]
    copied = "\n".join(load_speeches("HAMLET_HAMLET", "train", database))[3000:4000]
    rng = random.Random(0)
    return {
        "held-out Shakespeare": held_out,
        "copied training text": copied,
        "random characters": "".join(rng.choice(CHARS) for _ in range(PROBE_CHARS)),
    }


def time_probe(settings: Settings) -> dict:
    """The index's build and load times, and the probe's latency on each kind of text,
    against all clients and the page's default two; with a floor: one linear scan of the
    corpus, which a probe without an index would pay for every position."""
    from fedtext.service.links import DEFAULT_SETUP
    from fedtext.text import memorisation, plays

    database = plays.database_path()
    index, build_s = memorisation.timed_build(database)
    memorisation.load_index(database)  # stored, if this data build had none yet
    memorisation._LOADED.clear()
    start = time.perf_counter()
    memorisation.load_index(database)
    load_s = time.perf_counter() - start
    repeats = 3 if settings.quick else 10
    absent = b"\x7f" * memorisation.MIN_CHARS
    scans = []
    for _ in range(repeats):
        start = time.perf_counter()
        index.text.find(absent)
        scans.append(time.perf_counter() - start)
    probes = {}
    for name, text in probe_texts(database).items():
        for clients, ids in (
            ("all clients", None),
            ("default clients", DEFAULT_SETUP["client_ids"]),
        ):
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                probe = memorisation.find_copies(text, ids, index=index)
                times.append(time.perf_counter() - start)
            probes[(name, clients)] = (median(times), probe.per_thousand)
    return {
        "build_s": build_s,
        "load_s": load_s,
        "chars": len(index.codes),
        "scan_s": median(scans),
        "probes": probes,
    }


def run_privacy(ctx: dict, settings: Settings, results: Results) -> None:
    rounds = time_dp_rounds(ctx, settings)
    probe = time_probe(settings)
    held_ms, held_rate = probe["probes"][("held-out Shakespeare", "all clients")]
    copied_ms, _ = probe["probes"][("copied training text", "all clients")]
    scan_ms = 1000 * probe["scan_s"]
    default_rate = probe["probes"][("held-out Shakespeare", "default clients")][1]
    results.add(
        Row(
            "privacy.dp_round_ratio",
            SECTION,
            f"DP-FedAvg round (noise {NOISE_MULTIPLIER:g}, adaptive clip) / plain uniform round",
            rounds["ratio"],
            "x",
            note=f"{rounds['dp_s']:.2f} s against {rounds['plain_s']:.2f} s, medians of "
            f"{rounds['repeats']} interleaved rounds of the page's defaults, evaluation off; "
            f"paired {rounds['paired_ratio']:.2f}x",
        ),
        Row(
            "privacy.probe_build_s",
            SECTION,
            "memorisation index build (suffix array), once per data build",
            probe["build_s"],
            "s",
            note=f"{probe['chars']:,} characters of training text; loading the stored "
            f"index takes {probe['load_s']:.2f} s",
        ),
        Row(
            "privacy.probe_ms",
            SECTION,
            f"probe latency, {PROBE_CHARS:,} characters of held-out Shakespeare, all clients",
            1000 * held_ms,
            "ms",
            note=f"{held_ms / probe['scan_s']:.1f}x one linear scan of the corpus "
            f"({scan_ms:.1f} ms, same run), which an unindexed probe pays per position",
        ),
        Row(
            "privacy.probe_copied_ms",
            SECTION,
            f"probe latency, {PROBE_CHARS:,} characters copied whole from training text",
            1000 * copied_ms,
            "ms",
            note=f"{copied_ms / probe['scan_s']:.1f}x one linear scan",
        ),
        Row(
            "privacy.heldout_copies_per_1000",
            SECTION,
            "copied characters per 1,000 of held-out Shakespeare (spans of 12+): the floor "
            "for a model that memorised nothing",
            held_rate,
            "",
            note=f"against all clients; {default_rate:.0f} against the page's default two",
        ),
    )
