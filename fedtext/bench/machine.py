"""The machine under the benchmark: resident memory of a process tree, the load of other
processes, and what the run was measured on."""

from __future__ import annotations

import os
import platform
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import psutil  # installed with TFF (through portpicker)

from fedtext.bench.results import ROOT, Settings

# ---------------------------------------------------------------- memory


def tree_rss(pid: int) -> int:
    """Resident bytes of a process and all its descendants (the TFF worker is a child)."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for proc in procs:
        try:
            total += proc.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


class PeakRss:
    """Samples tree_rss(pid) in a thread; resident memory peaks between samples are missed,
    so the interval is short next to a round."""

    def __init__(self, pid: int, interval: float = 0.05):
        self.pid, self.interval, self.peak = pid, interval, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss(self.pid))
            self._stop.wait(self.interval)


# ---------------------------------------------------------------- other load and the machine


class ForeignLoad:
    """Cores used by processes outside this benchmark's own tree, sampled through the run:
    timings taken beside them are noisier than the machine's own."""

    def __init__(self, interval: float = 2.0):
        self.interval, self.samples = interval, []
        self.names: dict[str, float] = {}  # command line -> CPU seconds used during the run
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _cpu(self) -> dict[int, tuple[str, float]]:
        me = psutil.Process()
        ours = {me.pid, *(c.pid for c in me.children(recursive=True))}
        seen = {}
        for proc in psutil.process_iter(["cmdline", "cpu_times"]):
            if proc.pid not in ours and proc.info["cpu_times"] is not None:
                times = proc.info["cpu_times"]
                name = " ".join(proc.info["cmdline"] or [])[:100]
                seen[proc.pid] = (name, times.user + times.system)
        return seen

    def _run(self) -> None:
        last, last_t = self._cpu(), time.monotonic()
        while not self._stop.wait(self.interval):
            now, now_t = self._cpu(), time.monotonic()
            used = 0.0
            for pid, (name, cpu) in now.items():
                delta = cpu - last.get(pid, (name, cpu))[1]
                used += delta
                if name and delta > 0:
                    self.names[name] = self.names.get(name, 0.0) + delta
            self.samples.append(used / (now_t - last_t))
            last, last_t = now, now_t

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self) -> dict:
        busy = sorted(self.names.items(), key=lambda item: -item[1])
        return {
            "foreign_cores_mean": float(np.mean(self.samples)) if self.samples else 0.0,
            "foreign_cores_max": float(np.max(self.samples)) if self.samples else 0.0,
            "competing_jobs": [f"{name} ({cpu:.0f} CPU s)" for name, cpu in busy if cpu > 10],
        }


def cpu_model() -> str:
    """The processor's name: timings differ several-fold between machines of one kind."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine_name() -> str:
    """A short name for this machine, the same for every run on it: the host's name and the
    start of its machine id. Machines of one kind share a CPU name but not their speed (the
    report of one is no report of another)."""
    try:
        instance = Path("/etc/machine-id").read_text().strip()[:8]
    except OSError:
        instance = ""
    return "-".join(part for part in (platform.node() or "host", instance) if part)


def machine_meta(settings: Settings) -> dict:
    import tensorflow as tf
    import tensorflow_federated as tff

    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--", "fedtext"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    return {
        "time_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        "commit": commit + ("+dirty" if dirty else ""),
        "machine": machine_name(),
        "cpus": os.cpu_count(),
        "cpu_model": cpu_model(),
        "load_avg_1m": os.getloadavg()[0],
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "tff": tff.__version__,
        "base_model": str(settings.base_dir),
        "random_weights": settings.random_weights,
        "quick": settings.quick,
    }
