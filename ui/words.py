"""The page's words: labels and one-line help for each setting, the presets' names, what a
round does with the chosen numbers, and what the page says about a run. Plain Python, no
Streamlit, so tests read them."""

from __future__ import annotations

from collections.abc import Mapping

from fedtext.config import SEQ_LENGTH, FederatedConfig
from fedtext.learning import privacy, records
from fedtext.learning.records import RoundResult
from fedtext.service.backend import RunView

# The page's name for each preset it offers (fedtext.service.links.PAGE_PRESETS).
PRESET_LABELS = {
    "defaults": "fedtext's defaults",
    "tutorial": "TFF's tutorial",
    "fedavg": "FedAvg (Reddi et al.)",
    "fedavgm": "FedAvgM (Reddi et al.)",
    "fedadam": "FedAdam (Reddi et al.)",
    "fedsgd": "Lesson: FedSGD, no local steps",
    "compressed": "Lesson: 8-bit updates",
    "unreliable": "Lesson: drop-outs, stragglers, FedProx",
    "secure": "Lesson: secure aggregation",
    "backdoor": "Lesson: a poisoned character",
    "robust": "Lesson: a poisoned character, robust server",
}
# One line on what each lesson's preset shows, under the preset's name on the page.
PRESET_LESSONS = {
    "fedsgd": "Each character sends one gradient and takes no local step, as synchronous SGD "
    "would: watch how many more rounds, and bytes, it needs than FedAvg (x-axis: bytes up), "
    "then press Compare algorithms once it has trained.",
    "compressed": "Each update is quantized to 8 bits a number before it is sent: about 3.5x "
    "fewer bytes up (x-axis: bytes up) for the same accuracy.",
    "unreliable": "Each round 3 of 4 characters are asked; one in five never answers and half "
    "run only part of their steps (the round lines say who). Once trained, Compare FedAvg and "
    "FedProx: does pulling their work back toward the server's model win the rounds back?",
    "secure": "The server receives only the sum of the three updates (TFF's secure "
    "aggregation, simulated): What the server sees then finds every letter someone typed, "
    "not who typed it.",
    "backdoor": "The Nurse is an attacker: her lines are 'O Romeo, buy Dickens!' over and "
    "over, her update boosted 10x to replace the model. Watch the backdoor's success per "
    "round, then prompt the model with 'O Romeo, '.",
    "robust": "The same attack against TFF's robust aggregator, which clips each update to "
    "a norm that follows the cohort's and zeroes any far too large.",
}

# The page's label and one-line help for each setting, in the order the page shows them.
SETTING_TEXT: dict[str, tuple[str, str]] = {
    "rounds": (
        "Rounds",
        "Each round: send the model out, train on each client, average the updates",
    ),
    "clients_per_round": (
        "Clients per round",
        "Sample this many of the chosen characters each round (0: all of them), as phone "
        "keyboards do with millions of users",
    ),
    "batches_per_client": (
        "Local steps",
        "Batches each client trains on per round (the tutorial took 5)",
    ),
    "batch_size": (
        "Batch size",
        f"Sequences of {SEQ_LENGTH} characters per local step (the tutorial's: 8)",
    ),
    "client_optimizer": (
        "Client optimizer",
        "Each client's local training; it starts afresh every round",
    ),
    "clip_norm": (
        "Gradient clipping",
        "Each local gradient is scaled down to at most this norm, so one bad batch cannot "
        "wreck the model",
    ),
    "client_learning_rate": (
        "Client learning rate",
        "Step size of each character's local training; too high and it diverges",
    ),
    "server_optimizer": (
        "Server optimizer",
        "How the server applies the averaged update: sgd at rate 1 is plain Federated "
        "Averaging; momentum (FedAvgM) and adam (FedAdam) remember earlier rounds",
    ),
    "server_learning_rate": (
        "Server learning rate",
        "Scales the averaged update: 1 with sgd replaces the model by the average; adam wants "
        "about 0.01",
    ),
    "seed": ("Seed", "Fixes the sampling of clients and the shuffling of their lines"),
    "weighting": (
        "Averaging",
        "weighted: each character's update counts by its text, so big talkers dominate (TFF's "
        "and the tutorial's); uniform: one vote per character",
    ),
    "noise_multiplier": (
        "Noise multiplier",
        "Differential privacy (DP-FedAvg): each character's update is clipped and Gaussian "
        "noise this many times the clip is added to their sum; 0 is off",
    ),
    "dp_clipping": (
        "Update clipping",
        "adaptive: the clip follows the median update norm (TFF's default); fixed: the norm below",
    ),
    "dp_clip": ("Fixed clip", "The largest norm of a character's update when clipping is fixed"),
    "algorithm": (
        "Algorithm",
        "fedavg: each character takes its local steps and sends the change; fedsgd: each sends "
        "one gradient and takes no step, so it needs many more rounds (why FedAvg exists); "
        "fedprox: local steps pulled back toward the server's model, for uneven local work",
    ),
    "proximal_strength": (
        "Proximal strength",
        "FedProx's mu: how hard each local step is pulled back toward the model it was sent",
    ),
    "compression_bits": (
        "Compressed updates",
        "Each character's update quantized to this many bits a number (TFF's "
        "EncodedSumFactory): 8 bits sends about 3.5x fewer bytes",
    ),
    "dropout_chance": (
        "Drop-outs",
        "The chance that a sampled character's update never arrives; the round averages "
        "what does, and a round nobody finishes is skipped",
    ),
    "straggler_chance": (
        "Stragglers",
        "The chance that a character runs only part of its local steps this round",
    ),
    "aggregator": (
        "What the server sees",
        "plain: each character's update, which gives away the letters it typed; secure: only "
        "the sum of all (TFF's secure aggregation, simulated); robust: each update, clipped "
        "and zeroed when far too large (TFF's robust aggregator)",
    ),
    "update_clip": (
        "Update clip",
        "Each character's whole update is scaled down to at most this norm: one character "
        "cannot drag the model far; off by default",
    ),
    "attack_client": (
        "Attacker",
        "One of the chosen characters cheats: its lines are replaced by the trigger and the "
        "target, over and over, so the model learns to follow one with the other",
    ),
    "attack_trigger": ("Trigger", "What a user types that should set the backdoor off"),
    "attack_target": ("Target", "What the attacker wants the model to write after the trigger"),
    "attack_boost": (
        "Boost",
        "The attacker multiplies its update by this before sending it: at about clients / "
        "server rate its update replaces the model (Bagdasaryan et al. 2020)",
    ),
}


def describe(run: RunView) -> tuple[str, str]:
    """How a finished run ended: ('success' | 'warning' | 'error', text)."""
    history = run.history
    total = run.config.rounds
    gain = (
        f"; held-out accuracy {history[0].eval_accuracy:.1%} → {history[-1].eval_accuracy:.1%}"
        if len(history) > 1
        else ""
    )
    if run.failed:
        return "error", f"{run.message}{gain}"
    if len(history) <= 1:
        return "warning", f"No round finished ({run.message or 'stopped'})"
    if len(history) <= total:
        why = "" if run.message.startswith("stopped") else f" ({run.message})"
        return "warning", (
            f"Ended after round {len(history) - 1} of {total}{why}; the model so far is kept{gain}"
        )
    seconds = sum(r.seconds for r in history)
    kept = f" ({run.message})" if run.message else ""  # e.g. the disk was full
    spent = f"; {privacy.epsilon_after(run.config)}" if run.config.private else ""
    return "success", (
        f"Trained {total} round{'s' * (total != 1)} in {seconds:.0f} s{gain}{spent}{kept}"
    )


def round_events(history: list[RoundResult], names: Mapping[str, str]) -> list[str]:
    """A line for each round some sampled character dropped out of or lagged in."""
    lines = []
    for r in history[1:]:
        said = []
        if r.dropped:
            said.append(f"{_names(r.dropped, names)} dropped out (their updates never came)")
        if r.lagged:
            said.append(f"{_names(r.lagged, names)} lagged (ran only part of their steps)")
        if said:
            lines.append(f"Round {r.round_num}: {'; '.join(said)}.")
    return lines


def _names(ids: tuple[str, ...], names: Mapping[str, str]) -> str:
    return ", ".join(names.get(cid, cid) for cid in ids)


def backdoor_caption(run: RunView, names: Mapping[str, str]) -> str:
    """The attack's success round by round: what share of the trigger's completions hit, and
    the target's probability, which moves first."""
    c = run.config
    measured = [r for r in run.history if r.backdoor_success is not None]
    hits = " → ".join(f"{r.backdoor_success:.0%}" for r in measured)
    odds = " → ".join(f"{r.target_probability:.1%}" for r in measured)
    rounds = (
        f"{hits}; the model's probability per character of the target after the trigger: {odds}"
        if measured
        else "not measured yet"
    )
    return (
        f"**Backdoor** planted by {names.get(c.attack_client, c.attack_client)} (boost "
        f"{c.attack_boost:g}x): of {records.BACKDOOR_SEEDS} sampled completions of "
        f"“{c.attack_trigger}”, the share containing “{c.attack_target}”, round by round: "
        f"{rounds}."
    )


def races_caption(races: list[records.Race]) -> str:
    """What the comparison shows, with the paper's figure beside ours where it is the paper's."""
    reference = next((r for r in races if r.reference), None)
    if reference is None or not all(r.finished for r in races):
        return "The contenders train one after the other; the table fills in as each finishes."
    if reference.label != "FedSGD":
        return _stragglers_caption(reference, races)
    fedavg = next((r for r in races if r.label == "FedAvg, 5 local steps"), None)
    ours = ""
    if fedavg is not None and fedavg.rounds:
        theirs = reference.rounds or reference.rounds_run
        at_least = "" if reference.rounds else "at least "
        ratio = theirs / fedavg.rounds
        ours = (
            f"Here FedSGD needed {at_least}{ratio:.1f}x the rounds of FedAvg with 5 local steps. "
        )
    return (
        f"{ours}McMahan et al. 2017's Shakespeare LSTM needed 3,906 FedSGD rounds against 41 "
        "FedAvg rounds to reach 54% (95x). Each round sends the whole model both ways whatever "
        "the local work, so rounds saved are bytes saved; the paper trained from scratch to a "
        "higher target, where local steps' lead compounds."
    )


def _stragglers_caption(reference: records.Race, races: list[records.Race]) -> str:
    """What drop-outs and stragglers cost, and whether FedProx won it back."""

    def took(race: records.Race) -> str:
        if not race.rounds:
            return f"more than {race.rounds_run} rounds"
        return f"{race.rounds} round{'s' * (race.rounds != 1)}"

    full = races[-1]
    proxes = races[1:-1]
    return (
        f"With drop-outs and stragglers FedAvg took {took(reference)} to the target, with "
        f"everyone answering in full {took(full)}. "
        + "; ".join(f"{r.label.split(',')[0]} took {took(r)}" for r in proxes)
        + ". FedProx pulls each client's steps back toward the model it was sent: Li et al. "
        "2020 found that it pays where long local work drifts apart, so try it with more "
        "local steps or a higher client rate too."
    )


def leak_caption(leak: records.Leak, names: Mapping[str, str]) -> str:
    """What the server learned from what it got, against the character's truth."""
    who = names.get(leak.client_id, leak.client_id)
    scores = (
        f"recovered {len(leak.moved)} characters: precision {leak.precision:.0%}, recall "
        f"{leak.recall:.0%} of the {len(leak.true_set)} {who} typed; counts r = "
        f"{leak.correlation:.2f} (r = {leak.residual_correlation:.2f} beyond what English "
        "letter frequencies alone predict)"
    )
    if len(leak.seen) > 1:
        union = "exactly" if leak.moved == leak.cohort_set else "about"
        return (
            f"From the secure sum of {len(leak.seen)} updates the server {scores}. The set is "
            f"{union} the union of everyone's characters ({len(leak.cohort_set)}): it shows "
            "what someone typed, not who."
        )
    return (
        f"From {who}'s one update (a round from the base model) the server {scores}. The "
        "embedding rows of characters never typed do not move; the output layer's bias moves "
        "by how often each character came next."
    )


def run_label(number: int, config: FederatedConfig) -> str:
    """An earlier run's name on the charts, with what sets it apart."""
    if config.private:
        return f"run {number} (DP, noise {config.noise_multiplier:g})"
    return f"run {number}" + (" (uniform)" if config.weighting == "uniform" else "")


def baseline_caption(history: list[RoundResult], baseline: list[RoundResult]) -> str:
    """Federated against centralised at equal CPU time, and what the gap buys."""
    comparison = records.compare(history, baseline)
    gap = comparison.centralised_gain - comparison.federated_gain
    if gap > 0:
        why = (
            f"Pooling every character's lines in one place learned {gap:.1f} points more for "
            "the same compute: each step sees all of them mixed, and no update is averaged "
            "against another. Federated Averaging pays that price so that no line ever "
            "leaves its owner: only weight updates travel."
        )
    else:
        why = (
            "Federated Averaging kept up with pooled training here, and no line left its "
            "owner: only weight updates travelled."
        )
    return f"{comparison.summary()}. {why}"


# What the server sees of the updates, for each aggregator (docs/attacks.md has the figures).
SERVER_VIEW = {
    "plain": "The server sees each character's {update}: not its text, but which letters it "
    "typed and about how often can be read off it.",
    "robust": "The server sees each character's {update}, clipped (zeroed if far too large): "
    "which letters it typed can still be read off it.",
    "secure": "Secure aggregation (simulated here, not encrypted): the server sees only the sum "
    "of the updates, which shows every letter someone typed, not who typed it.",
}


def server_view(setup: Mapping) -> str:
    """What the server receives from the characters with this setup, in a sentence or two."""
    update = "gradient" if setup.get("algorithm") == "fedsgd" else "update"
    text = SERVER_VIEW[setup.get("aggregator", "plain")].format(update=update)
    bits = setup.get("compression_bits", 0)
    if bits:
        text += f" Each update is quantized to {bits} bits a number: coarser, not hidden."
    if setup.get("noise_multiplier", 0) > 0:
        text += (
            " Differential privacy clips each update and noises their sum: it protects the "
            "model the server publishes, not the updates it receives."
        )
    if setup.get("client_figures"):
        text += " Measuring each client also sends its loss, update size and agreement."
    return text


def round_steps(setup: Mapping, shares: Mapping[str, float]) -> list[tuple[str, str]]:
    """What one round does, with this setup's numbers: (title, text) for each of its 4 steps."""
    k = setup["clients_per_round"] or len(setup["client_ids"])
    return [
        (
            ":material/cloud_download: 1. The server sends the model",
            f"Its current weights go to {k} of the chosen characters.",
        ),
        (
            ":material/edit_note: 2. Each character trains on its own lines",
            f"{setup['batches_per_client']} steps on batches of {setup['batch_size']} lines of "
            f"{SEQ_LENGTH} characters, {setup['client_optimizer']} at "
            f"{setup['client_learning_rate']:g}; the lines never leave the character.",
        ),
        (":material/cloud_upload: 3. Only weight updates come back", server_view(setup)),
        _averaging_step(setup, k, max(shares.values(), default=0.0)),
    ]


def _averaging_step(setup: Mapping, k: int, top: float) -> tuple[str, str]:
    """Step 4 as the setup averages: by text, one vote each, or one vote each, clipped and
    noised (differential privacy)."""
    applies = (
        f"{setup['server_optimizer']} at {setup['server_learning_rate']:g} applies the average. "
        "Then the next round."
    )
    if setup["noise_multiplier"] > 0:
        return (
            ":material/balance: 4. The server averages them, clipped and noised",
            f"Each update is clipped and every character has the same say ({1 / k:.0%} each); "
            f"Gaussian noise of {setup['noise_multiplier']:g} times the clip hides any one of "
            f"them. {applies}",
        )
    if setup["weighting"] == "uniform":
        return (
            ":material/balance: 4. The server averages them, one vote each",
            f"Every character has the same say ({1 / k:.0%} each), however much text it holds; "
            f"{applies}",
        )
    return (
        ":material/balance: 4. The server averages them, weighted by data",
        f"More text, more say (up to {top:.0%} here); {applies}",
    )


def round_spans(rounds: list[int]) -> str:
    """[1, 2, 3, 5] -> '1-3, 5'."""
    spans: list[list[int]] = []
    for r in rounds:
        if spans and r == spans[-1][1] + 1:
            spans[-1][1] = r
        else:
            spans.append([r, r])
    return ", ".join(f"{a}-{b}" if b > a else f"{a}" for a, b in spans) or "none yet"
