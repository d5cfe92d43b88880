"""Bounds on what one visitor or one class may ask of the shared page service."""

from __future__ import annotations

from dataclasses import dataclass

from fedtext.config import ConfigError, FederatedConfig


@dataclass(frozen=True)
class ServiceLimits:
    """Per-visitor bounds on the shared page service, so one visitor cannot take it."""

    max_rounds: int = 50  # about 10 minutes of the default setting on 2 cores
    max_clients: int = 100  # the page's held-out evaluation grows with the chosen clients
    max_batches_per_client: int = 20
    max_generate_chars: int = 1000
    max_jobs_per_visitor: int = 1  # queued or running at once
    max_queue: int = 20  # jobs waiting in all

    def check(self, config: FederatedConfig) -> None:
        for name, value, limit in (
            ("rounds", config.rounds, self.max_rounds),
            ("clients", len(config.client_ids), self.max_clients),
            ("batches per client", config.batches_per_client, self.max_batches_per_client),
        ):
            if value > limit:
                raise ConfigError(f"{name} is limited to {limit} on this site, got {value}")


@dataclass(frozen=True)
class ClassLimits:
    """Bounds on a class run (fedtext.service.classroom), so that one class cannot take
    the shared service and a student's pasted lines stay a few lines."""

    # Students joined at once. Every present student trains every round (unless the teacher
    # samples): 40 clients of 5 local steps make a round about 20x the default two clients'.
    max_students: int = 40
    # Class runs open at once on the service: each holds a model and its students' text in memory.
    max_classes: int = 4
    # Pasted lines: at least one sequence of the tutorial's 100 characters (and its target);
    # at most what a round of the largest local setting reads (20 batches of 8 x 101 = 16,160),
    # a few pages, not a book.
    min_text_chars: int = 101
    max_text_chars: int = 16_000
    max_name_chars: int = 30  # a name or nickname, as the teacher's roster shows it
    max_seconds_between_rounds: float = 120.0  # a pause to read the new text, not a lesson's end

    def check_pause(self, seconds: float) -> None:
        if not isinstance(seconds, (int, float)) or not (
            0 <= seconds <= self.max_seconds_between_rounds
        ):
            raise ConfigError(
                f"seconds between rounds must lie between 0 and "
                f"{self.max_seconds_between_rounds:g}, got {seconds!r}"
            )
