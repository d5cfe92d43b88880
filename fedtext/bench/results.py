"""What a run records: its settings, the figures of the table, and where they go."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
OUT_DIR = ROOT / "bench"
SECTIONS = (
    "overhead",
    "scaling",
    "coldstart",
    "page",
    "generation",
    "memory",
    "learning",
    "federation",
    "privacy",
    "workers",
    "communication",
    "attacks",
    "classroom",
)


@dataclass
class Row:
    """One figure of the table. `key` is stable across runs, so a run compares with the last on
    the same machine; a figure whose definition changes (what is run, or how it is counted)
    takes a new key, so that no run sets it beside a figure of another kind."""

    key: str
    section: str
    measure: str
    value: float | None
    unit: str
    target_max: float | None = None  # the target, where it sets one
    note: str = ""
    previous: float | None = None
    # Where and when it was measured, filled in by the report: a row carried from an earlier
    # run keeps its own.
    machine: str = ""
    commit: str = ""
    measured_utc: str = ""
    sections: tuple[str, ...] = ()  # the benchmark sections of the step that measured it

    @property
    def ok(self) -> bool | None:
        if self.target_max is None or self.value is None:
            return None
        return self.value <= self.target_max


@dataclass(frozen=True)
class Settings:
    base_dir: Path
    out_dir: Path = OUT_DIR
    sections: tuple[str, ...] = SECTIONS
    quick: bool = False
    repeats: int = 3  # timed rounds per scaling point; medians over these
    overhead_repeats: int = 5  # more for the two headline ratios
    federation_rounds: int = 1000  # an upper bound: the CPU budget ends the run first
    random_weights: bool = False  # the base model is untrained: learning figures mean nothing

    @property
    def clients_sweep(self) -> tuple[int, ...]:
        return (1, 2, 4) if self.quick else (1, 2, 4, 8, 16)

    @property
    def batches_sweep(self) -> tuple[int, ...]:
        return (1, 2, 5) if self.quick else (1, 2, 5, 10, 20)


@dataclass
class Results:
    settings: Settings
    rows: list[Row] = field(default_factory=list)
    scaling: list[dict] = field(default_factory=list)
    learning: dict[str, list[dict]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    step: tuple[str, ...] = ()  # the sections of the step running now

    def add(self, *rows: Row) -> None:
        self.rows.extend(rows)
        for row in rows:
            row.sections = row.sections or self.step
            shown = "skipped" if row.value is None else f"{row.value:.3g} {row.unit}"
            print(
                f"  {row.measure}: {shown}{'  (' + row.note + ')' if row.note else ''}", flush=True
            )


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))
