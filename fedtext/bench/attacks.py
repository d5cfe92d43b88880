"""What the server sees and who can cheat: the leakage probe on one plain update and on a
secure sum, a poisoned character against each defence, and what a secure and a robust round
cost against a plain one in the same run."""

from __future__ import annotations

from fedtext.bench.results import Results, Row, Settings, median

SECTION = "8 attacks"
LEAK_CLIENT = "ROMEO_AND_JULIET_JULIET"  # the page's default pair
SECURE_COHORT = ("ROMEO_AND_JULIET_ROMEO", "ROMEO_AND_JULIET_NURSE")
# The attacker is the Nurse beside the default pair; its lines become trigger + target.
HONEST = ("ROMEO_AND_JULIET_ROMEO", "ROMEO_AND_JULIET_JULIET")
ATTACKER = "ROMEO_AND_JULIET_NURSE"
TRIGGER = "O Romeo, "
TARGET = "buy Dickens!"
# Bagdasaryan et al.'s model replacement: boost = clients / server rate = 3 / 0.3.
BOOST = 10.0
# Per attacked run, 2 batches a client: a round of the shipped model took minutes on the
# shared, loaded machine these figures were measured on.
ROUNDS = 2
BATCHES = 2
DP_NOISE = 0.1  # weak DP, as in Sun et al. 2019: a bound on each update more than privacy
DEFENCES = {
    "none": {},
    "robust": {"aggregator": "robust"},
    "clip": {"update_clip": 0.1},
    "dp": {"noise_multiplier": DP_NOISE, "weighting": "uniform", "dp_clipping": "fixed"},
}


def measure_leaks(ctx: dict, settings: Settings) -> dict:
    """The probe on LEAK_CLIENT's plain update and on the secure sum with SECURE_COHORT."""
    from fedtext.config import FederatedConfig
    from fedtext.learning.leakage import probe

    leaks = {}
    for kind, cohort in (("plain", ()), ("secure", SECURE_COHORT)):
        config = FederatedConfig(client_ids=(LEAK_CLIENT, *cohort), aggregator=kind)
        leaks[kind] = probe(
            config, ctx["train"], ctx["test"], LEAK_CLIENT, settings.base_dir, cohort
        )
    return leaks


def run_attack(ctx: dict, settings: Settings, rounds: int) -> dict:
    """Backdoor success and clean held-out accuracy, each round, with each defence and without
    an attacker; the page's defaults otherwise."""
    from fedtext.config import FederatedConfig
    from fedtext.learning.attacks import AttackTrainer
    from fedtext.learning.training import FederatedTrainer
    from fedtext.service.links import DEFAULT_SETUP

    base = {**DEFAULT_SETUP, "client_ids": (*HONEST, ATTACKER), "rounds": rounds}
    base["batches_per_client"] = BATCHES
    attack = dict(
        attack_client=ATTACKER, attack_trigger=TRIGGER, attack_target=TARGET, attack_boost=BOOST
    )
    runs = {}
    honest = FederatedTrainer(FederatedConfig(**base), ctx["train"], ctx["test"], settings.base_dir)
    runs["honest"] = ([], [r.eval_accuracy for r in honest.rounds()], [])
    for name, defence in DEFENCES.items():
        config = FederatedConfig(**{**base, **attack, **defence})
        trainer = AttackTrainer(config, ctx["train"], ctx["test"], settings.base_dir)
        accuracy = [r.eval_accuracy for r in trainer.rounds()]
        runs[name] = (trainer.backdoor, accuracy, trainer.target_odds)
    return runs


def time_aggregators(ctx: dict, settings: Settings) -> dict:
    """Median wall time of a secure, a robust and a plain round of the page's defaults, the
    trainers' rounds interleaved so all see the same machine; each trainer's first round (TFF's
    one-off costs) is left out, and evaluation is off."""
    from fedtext.config import FederatedConfig
    from fedtext.learning.training import FederatedTrainer
    from fedtext.service.links import DEFAULT_SETUP

    repeats = 1 if settings.quick else settings.overhead_repeats
    kinds = ("plain", "secure", "robust")
    trainers = [
        FederatedTrainer(
            FederatedConfig(**{**DEFAULT_SETUP, "aggregator": kind, "rounds": 1 + repeats}),
            ctx["train"],
            ctx["test"],
            settings.base_dir,
        )
        for kind in kinds
    ]
    for trainer in trainers:
        trainer.evaluate = lambda weights=None: (0.0, 0.0)  # the round alone
    iterators = [t.rounds() for t in trainers]
    times: dict[str, list[float]] = {kind: [] for kind in kinds}
    for round_num in range(2 + repeats):
        for kind, iterator in zip(kinds, iterators, strict=True):
            result = next(iterator)
            if round_num >= 2:  # 0 is the base model, 1 the warm-up
                times[kind].append(result.seconds)
    return {kind: median(t) for kind, t in times.items()} | {"repeats": repeats}


def _leak_rows(kind: str, leak) -> list[Row]:
    prefix = "privacy.leak" if kind == "plain" else "privacy.leak.secure"
    seen = (
        f"{LEAK_CLIENT}'s own update"
        if kind == "plain"
        else f"the secure sum of {', '.join(leak.seen)}"
    )
    return [
        Row(
            f"{prefix}.charset_recall",
            SECTION,
            f"characters {LEAK_CLIENT} typed, recovered from {seen}",
            leak.recall,
            "",
            note=f"precision {leak.precision:.3f}: {len(leak.moved)} recovered, "
            f"{len(leak.true_set)} typed, {len(leak.cohort_set)} in the cohort",
        ),
        Row(
            f"{prefix}.count_correlation",
            SECTION,
            f"r of {LEAK_CLIENT}'s true and recovered character counts, from {seen}",
            leak.correlation,
            "",
            note=f"floor: the base model's prior alone {leak.correlation_prior_only:.3f}, "
            f"the bias update without the prior {leak.correlation_without_prior:.3f}",
        ),
        Row(
            f"{prefix}.residual_correlation",
            SECTION,
            f"r of {LEAK_CLIENT}'s counts beyond the prior's expectation, from {seen}",
            leak.residual_correlation,
            "",
            note="what is the client's own: English letter frequencies alone correlate "
            "with any text's counts",
        ),
    ]


def run_attacks(ctx: dict, settings: Settings, results: Results) -> None:
    leaks = measure_leaks(ctx, settings)
    results.add(*_leak_rows("plain", leaks["plain"]), *_leak_rows("secure", leaks["secure"]))
    times = time_aggregators(ctx, settings)
    for kind in ("secure", "robust"):
        results.add(
            Row(
                f"attack.{kind}_round_ratio",
                SECTION,
                f"{kind} aggregator round / plain round, the page's defaults",
                times[kind] / times["plain"],
                "x",
                note=f"{times[kind]:.2f} s against {times['plain']:.2f} s (the floor, same "
                f"run), medians of {times['repeats']} interleaved rounds, evaluation off",
            )
        )
    rounds = 1 if settings.quick else ROUNDS
    runs = run_attack(ctx, settings, rounds)
    for name in DEFENCES:
        backdoor, accuracy, odds = runs[name]
        results.add(
            Row(
                f"attack.backdoor_success.{name}",
                SECTION,
                f"backdoor success after {rounds} rounds of {BATCHES} batches, defence: {name}",
                backdoor[-1],
                "",
                note=f"per round {', '.join(f'{b:.2f}' for b in backdoor)}; the target's "
                f"probability per character {' -> '.join(f'{p:.3f}' for p in odds)}; held-out "
                f"accuracy {accuracy[-1]:.3f}; floor: the base model's {backdoor[0]:.2f}",
            )
        )
    honest_accuracy = runs["honest"][1][-1]
    attacked_accuracy = runs["none"][1][-1]
    results.add(
        Row(
            "attack.clean_accuracy_cost_points",
            SECTION,
            f"held-out accuracy lost to the attacker after {rounds} rounds, no defence",
            100 * (honest_accuracy - attacked_accuracy),
            "points",
            note=f"{attacked_accuracy:.3f} against {honest_accuracy:.3f} without an attacker "
            f"(the floor: the Nurse's own lines); "
            + ", ".join(
                f"{name} {100 * (honest_accuracy - runs[name][1][-1]):.1f}"
                for name in DEFENCES
                if name != "none"
            ),
        )
    )
