"""What a DP-FedAvg run's privacy costs: epsilon from `dp_accounting`'s RDP accountant.

Plain Python: `dp_accounting` imports no TensorFlow, so the page can show a run's cost before
TensorFlow has loaded."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

from fedtext.config import FederatedConfig

# delta = N^-DELTA_EXPONENT for N characters: below 1/N, the usual bound, since a delta of
# 1/N would allow publishing one character's lines outright. The exponent is the common
# "1/N^1.1" (TFF's DP tutorial uses delta = 1e-5 for its 3,383 clients: 1/N^1.41).
DELTA_EXPONENT = 1.1
WEAK_DELTA = 1e-3  # above this, the statement says the population is too small to hide in


@dataclass(frozen=True)
class Epsilon:
    """The (epsilon, delta) guarantee after some rounds, with what it was computed from."""

    epsilon: float  # inf for a run without noise; 0 before any round
    delta: float
    rounds: int
    noise_multiplier: float
    sampling_rate: float  # q: the chance a given character takes part in a round
    population: int  # N: the chosen characters; the guarantee is about any one of them

    def __str__(self) -> str:
        if math.isinf(self.epsilon):
            return "no differential privacy (noise multiplier 0)"
        rounds = f"{self.rounds} round{'s' if self.rounds != 1 else ''}"
        return f"ε = {self.epsilon:.2f} at δ = {self.delta:.1e} after {rounds}"


def delta_for(population: int) -> float:
    """The delta for N characters: N^-1.1, always below 1/N (see DELTA_EXPONENT)."""
    if population < 1:
        raise ValueError(f"population must be at least 1, got {population}")
    return min(1.0, population**-DELTA_EXPONENT)


@functools.lru_cache(maxsize=1024)
def epsilon_for(sampling_rate: float, noise_multiplier: float, rounds: int, delta: float) -> float:
    """Epsilon of `rounds` Poisson-sampled Gaussian mechanisms, by the RDP accountant.

    Each round: every client joins with probability `sampling_rate` and the sum of clipped
    updates gets Gaussian noise of `noise_multiplier` times the clip (McMahan et al. 2018).
    """
    # Deferred: dp_accounting loads SciPy (3 s here), and the page imports this module before
    # its first paint.
    import dp_accounting
    from dp_accounting import rdp

    if rounds <= 0:
        return 0.0
    if noise_multiplier <= 0:
        return math.inf
    accountant = rdp.RdpAccountant()
    accountant.compose(
        dp_accounting.SelfComposedDpEvent(
            dp_accounting.PoissonSampledDpEvent(
                sampling_rate, dp_accounting.GaussianDpEvent(noise_multiplier)
            ),
            rounds,
        )
    )
    return float(accountant.get_epsilon(delta))


def epsilon_after(config: FederatedConfig, rounds: int | None = None) -> Epsilon:
    """The guarantee of `config`'s run after `rounds` rounds (default: all of them).

    q is clients per round / chosen clients, N the chosen clients, delta N^-1.1.
    """
    rounds = config.rounds if rounds is None else rounds
    population = len(set(config.client_ids))
    q = min(1.0, config.cohort_size / population)
    delta = delta_for(population)
    z = float(config.noise_multiplier)
    return Epsilon(epsilon_for(q, z, rounds, delta), delta, rounds, z, q, population)


def epsilon_curve(config: FederatedConfig) -> list[Epsilon]:
    """Epsilon after each round 1..config.rounds, for a chart of the budget being spent."""
    return [epsilon_after(config, r) for r in range(1, config.rounds + 1)]


def guarantee(config: FederatedConfig) -> str:
    """One line: what the guarantee covers, for the page and the command line."""
    if not config.private:
        return "No differential privacy: the noise multiplier is 0."
    cost = epsilon_after(config)
    line = (
        f"User-level differential privacy over the {cost.population:,} chosen characters: the "
        f"model after {cost.rounds} rounds is almost as likely (ε = {cost.epsilon:.2f}, "
        f"δ = {cost.delta:.1e}) had any one of them, with all of their lines, not taken part."
    )
    if cost.delta > WEAK_DELTA:
        line += (
            f" With so few characters δ is large ({cost.delta:.2g}): a weak guarantee, "
            "since there are few others to hide among."
        )
    return line


def approximation(config: FederatedConfig) -> str:
    """One line: where the accounting is approximate."""
    if config.cohort_size >= len(set(config.client_ids)):
        return (
            "Exact sampling: every chosen character takes part in every round (q = 1). The "
            "guarantee covers the released models, not the clients' updates the server sees."
        )
    return (
        f"Approximate: the accountant assumes each character joins a round independently with "
        f"probability {config.cohort_size}/{len(set(config.client_ids))} (Poisson sampling); "
        f"fedtext draws exactly {config.cohort_size} a round, which the accountant does not "
        "cover exactly. The guarantee covers the released models, not the clients' updates "
        "the server sees."
    )
