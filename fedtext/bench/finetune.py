"""Cold start and memory of the command line: `fedtext finetune` in a fresh process."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from fedtext.bench.engine import largest_clients
from fedtext.bench.machine import PeakRss, tree_rss
from fedtext.bench.results import ROOT, Results, Row, Settings, median


def run_cli_rounds(settings: Settings, clients: Sequence[str], rounds: int, timeout: float = 600):
    """Runs `fedtext finetune` in a fresh process; seconds to each printed round and peak memory."""
    marks: dict[int, float] = {}
    rss_at: dict[int, int] = {}
    with tempfile.TemporaryDirectory() as tmp, open(Path(tmp) / "stderr", "w+") as err:
        cmd = [
            sys.executable,
            "-m",
            "fedtext",
            "finetune",
            "--clients",
            *clients,
            "--rounds",
            str(rounds),
            "--base",
            str(settings.base_dir),
            "--output",
            str(Path(tmp) / "out"),
        ]
        start = time.perf_counter()
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=err, text=True, cwd=ROOT, start_new_session=True
        )
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        try:
            with PeakRss(proc.pid) as peak:
                for line in proc.stdout:
                    if line.startswith("round"):
                        round_num = int(line.split()[1].rstrip(":"))
                        marks[round_num] = time.perf_counter() - start
                        rss_at[round_num] = tree_rss(proc.pid)
                code = proc.wait()
        finally:
            timer.cancel()
            if proc.poll() is None:
                proc.kill()
        if code != 0:
            err.seek(0)
            tail = err.read().strip().splitlines()[-1:] or ["no output"]
            raise RuntimeError(f"fedtext finetune exited {code}: {tail[0]}")
    return marks, rss_at, peak.peak, time.perf_counter() - start


def run_coldstart(settings: Settings, results: Results) -> None:
    from fedtext.config import TUTORIAL_CLIENTS

    repeats = 1 if settings.quick else 3
    runs = [run_cli_rounds(settings, TUTORIAL_CLIENTS, 1) for _ in range(repeats)]
    first = median([marks[1] for marks, *_ in runs])
    base = median([marks[0] for marks, *_ in runs])
    results.add(
        Row(
            "coldstart.first_round_s",
            "3 cold start",
            "process start to first finished round (fedtext finetune, tutorial's setting)",
            first,
            "s",
            30.0,
            note=f"base model evaluated at {base:.1f} s; median of {len(runs)}",
        ),
        Row(
            "coldstart.process_s",
            "3 cold start",
            "whole command, 1 round",
            median([r[3] for r in runs]),
            "s",
        ),
    )


def run_memory(settings: Settings, results: Results) -> None:
    clients = largest_clients(4 if settings.quick else 8)
    _, rss_at, peak, _ = run_cli_rounds(settings, clients, 2)
    results.add(
        Row(
            "memory.cli_peak_mb",
            "5 memory",
            f"peak resident, engine + TFF worker, training {len(clients)} clients x 5 batches",
            peak / 2**20,
            "MB",
            4096.0,
            note="fedtext finetune, sampled every 50 ms",
        ),
        Row(
            "memory.cli_idle_mb",
            "5 memory",
            "resident, engine with model and data loaded, before TFF",
            rss_at[0] / 2**20,
            "MB",
        ),
    )
