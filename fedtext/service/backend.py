"""The page's shared service, without Streamlit: the engine that loads TensorFlow in the
background, the run a link points to, submitting and following a visitor's run, and its
progress line. Everything here returns plain values; the page's words are in ui/words.py."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from fedtext.config import ConfigError, FederatedConfig
from fedtext.distribution import runtime
from fedtext.learning import privacy, records
from fedtext.learning.records import RoundResult
from fedtext.model.generation import TextGenerator, load_generator
from fedtext.model.weights import WeightsError
from fedtext.service import allocator, links, store
from fedtext.service.jobs import Job, JobState, QueueFull, Task, TrainingQueue
from fedtext.text import memorisation, plays

FIRST_DRAW_WAIT_S = 5.0  # the longest the engine waits for the first page to finish drawing
SAVE_WAIT_S = 30.0  # the longest a page waits for a finished run to be stored


class Engine:
    """The page's engine, loaded once per service process in a background thread so that the
    page draws meanwhile: the base model's generator first (NumPy, under a second), then
    TensorFlow, TFF, the clients' data and the compiled round, then the shared training queue."""

    def __init__(self, base_dir: Path, data_root: Path):
        # Before TensorFlow's thread pools, gRPC's and the training queue's threads exist: each
        # would otherwise keep an arena of its own, and a round's freed copies of the model
        # stay resident in them (fedtext.service.allocator).
        allocator.configure()
        self.step = "loading the Dickens base model"
        self.error = ""  # why the engine could not start, for the page to show
        self.base: TextGenerator | None = None
        self.queue: TrainingQueue | None = None
        self.store = store.RunStore(data_root, base_dir)
        self.base_ready = threading.Event()  # set once `base` or `error` is
        self.ready = threading.Event()  # set once `queue` or `error` is
        self.page_drawn = threading.Event()  # set by the first page run that showed base text
        threading.Thread(
            target=self._prepare, args=(base_dir,), name="fedtext-engine", daemon=True
        ).start()

    def _prepare(self, base_dir: Path) -> None:
        try:
            self.base = load_generator(base_dir)
        except WeightsError as error:
            self.error = (
                f"The base model cannot be loaded: {error}. Set FEDTEXT_BASE_MODEL to a "
                "model directory, or pre-train one: `python -m fedtext pretrain "
                "BOOKS.txt --output DIR`."
            )
        except Exception as error:  # shown on the page; restarting the service is the remedy
            self.error = f"The base model cannot be loaded: {type(error).__name__}: {error}"
        finally:
            self.base_ready.set()
        if self.error:
            self.ready.set()
            return
        # TensorFlow's and TFF's imports hold the GIL for seconds: let the first visitors' page
        # finish drawing (a fraction of a second) before they start.
        self.page_drawn.wait(timeout=FIRST_DRAW_WAIT_S)
        try:  # the copy probe's index: built once per data build (seconds), then read (0.1 s)
            memorisation.load_index()
        except Exception:  # the page's probe tries again and says why
            logging.getLogger(__name__).exception("loading the copy index failed")
        try:
            self.step = "starting TensorFlow"
            runtime.import_tensorflow()
            # Deferred to this thread: the page imports this module before TensorFlow loads.
            from fedtext.learning.process import build_process

            self.step = "loading TensorFlow Federated and the clients' data"
            train, test = plays.load_client_data()
            default, *others = links.PREBUILT_PROCESSES
            self.step = "compiling the federated round"
            build_process(self.base.config, *default)
            self.queue = TrainingQueue(train, test, base_dir, store=self.store, limits=links.LIMITS)
        except Exception as error:  # shown on the page; restarting the service is the remedy
            self.error = f"TensorFlow Federated could not start: {type(error).__name__}: {error}"
            return
        finally:
            self.ready.set()
        for kinds in others:  # now, rather than in the first job that asks for them
            try:
                build_process(self.base.config, *kinds)
            except Exception:  # a job that asks for it tries again and fails with the reason
                logging.getLogger(__name__).exception("building the %s round failed", kinds)
        allocator.release_free_memory()  # what the imports and the tracing freed

    def job(self, run_id: str) -> Job | None:
        return self.queue.get(run_id) if self.queue is not None and run_id else None


@dataclass(frozen=True)
class RunView:
    """What the page shows of a run: live from the training queue, or finished and on disk."""

    run_id: str
    config: FederatedConfig
    history: list[RoundResult]
    weights: list | None = None
    message: str = ""
    failed: bool = False
    resumable: bool = False  # failed because TFF's worker died: it can go on from its last round
    job: Job | None = None  # while it is queued or running
    baseline: list[RoundResult] = dataclasses.field(default_factory=list)  # centralised
    clients: list[records.ClientFigures] = dataclasses.field(default_factory=list)  # per client
    personal: dict[str, records.PersonalGain] = dataclasses.field(default_factory=dict)
    gains: list[records.PersonalGain] = dataclasses.field(default_factory=list)
    races: list[records.Race] = dataclasses.field(default_factory=list)  # the lesson's comparison
    leaks: dict[str, records.Leak] = dataclasses.field(default_factory=dict)  # updates read
    created: float = 0.0  # when it was stored (time.time()); 0 while it trains

    @property
    def live(self) -> bool:
        return self.job is not None and not self.job.finished

    @property
    def trained(self) -> bool:
        rounds_done = not self.live or self.job.task is not Task.ROUNDS
        return rounds_done and self.weights is not None and len(self.history) > 1


def find_run(
    run_id: str, job: Job | None, load_saved: Callable[[str], store.SavedRun]
) -> tuple[RunView | None, str]:
    """The run a link names: live in the queue (`job`), else as stored (the same weights before
    and after a service restart); else None and why."""
    if job is not None and not job.finished:
        return RunView(
            run_id,
            job.config,
            list(job.history),
            job.weights,
            job=job,
            baseline=list(job.baseline),
            clients=list(job.clients),
            personal=dict(job.personal),
            gains=list(job.gains),
            races=list(job.races),
            leaks=dict(job.leaks),
        ), ""
    failed = job is not None and job.state is JobState.FAILED
    resumable = job is not None and job.resumable
    try:
        saved = load_saved(run_id)
    except KeyError:
        if job is not None:  # ended before a round finished: nothing worth storing
            return RunView(
                run_id, job.config, list(job.history), job.weights, job.message, failed, resumable
            ), ""
        return None, (
            "The run in this link is not stored here (runs are kept for "
            f"{store.MAX_AGE_DAYS:.0f} days): train a new one."
        )
    except WeightsError as error:
        return None, f"The run in this link cannot be read: {error}"
    view = RunView(
        run_id,
        saved.config,
        saved.history,
        saved.weights,
        saved.message,
        failed,
        resumable,
        baseline=saved.baseline,
        clients=saved.clients,
        personal=saved.personal,
        gains=saved.gains,
        races=saved.races,
        leaks=saved.leaks,
        created=saved.created,
    )
    return view, ""


def saved_stamp(store: store.RunStore, run_id: str) -> int:
    """The stored run's file time, 0 if none: keys a cache, as a resumed run is saved again."""
    try:
        return (store.path(run_id) / "run.json").stat().st_mtime_ns
    except (OSError, KeyError):
        return 0


class Submission(NamedTuple):
    """What came of a visitor's Train: a run to follow, or why not."""

    run_id: str
    why: str = ""  # why not, when there is no run id
    # "new": queued; "joined": the queued or running job with the same settings; "stored": a
    # stored run with the same settings, shown at once.
    how: str = "new"


def stored_run(engine: Engine, config: FederatedConfig) -> Submission | None:
    """The stored run that trained exactly these settings, if any: no training, and no need
    to wait for TensorFlow to load."""
    found = engine.store.find(config)
    return Submission(found[0], how="stored") if found else None


def submit(
    engine: Engine,
    config: FederatedConfig,
    owner: str,
    page_open: Callable[[], bool] | None,
    fresh: bool = False,
) -> Submission:
    """A visitor's Train: the stored run with the same settings (unless `fresh`), else the
    job with them that is queued, running or trained and being stored, joined, else a new job
    once the engine is ready."""
    stored = None if fresh else stored_run(engine, config)
    if stored is not None:
        return stored
    if engine.error:
        return Submission("", engine.error)
    try:
        job = engine.queue.submit(config, owner, page_open, fresh)
    except (ConfigError, QueueFull) as error:
        return Submission("", f"Cannot start training: {error}")
    return Submission(job.job_id, how="new" if job.owner == owner else "joined")


def stop(engine: Engine, run_id: str, owner: str) -> bool:
    """A visitor's Stop: they stop following; the run stops once nobody follows it. Returns
    whether it stops (False: it goes on for the others)."""
    return engine.queue.stop(run_id, owner) if engine.queue is not None else False


def follow(
    engine: Engine,
    run_id: str,
    rounds_shown: int,
    owner: str = "",
    page_open: Callable[[], bool] | None = None,
) -> tuple[float, str] | None:
    """One poll of a live run (the heartbeat of `owner`, who follows it): the progress line, or
    None when the page should redraw because a round landed or the run ended (and is stored by
    now)."""
    job = engine.job(run_id)
    if job is None or job.finished:
        wait_until_saved(job)
        return None
    engine.queue.touch(job.job_id, owner, page_open)
    if len(job.history) != rounds_shown:
        return None
    return progress_text(job, engine.queue)


def wait_until_saved(job: Job | None, timeout: float = SAVE_WAIT_S) -> None:
    """Returns once a finished job's run is stored: the queue stores a run right after it
    finishes, then sets `ended`. A page that read the store before would show the stored copy
    as it was before (without the extra just made, or no run at all)."""
    deadline = time.monotonic() + timeout
    while job is not None and job.finished and job.ended is None and time.monotonic() < deadline:
        time.sleep(0.1)


def _stored(engine: Engine, run_id: str) -> store.SavedRun | None:
    try:
        return engine.store.load(run_id)
    except (KeyError, WeightsError):
        return None


def request_baseline(engine: Engine, run_id: str, owner: str) -> str:
    """Queue the centralised baseline of a finished run: '' when queued, else why not."""
    why = engine.queue.run_baseline(run_id, owner, _stored(engine, run_id))
    return f"Cannot run the baseline: {why}" if why else ""


def request_personal_model(engine: Engine, run_id: str, owner: str, client_id: str) -> str:
    """Queue a model for one of a finished run's characters: '' when queued, else why not."""
    why = engine.queue.personalise(run_id, owner, client_id, _stored(engine, run_id))
    return f"Cannot make that model: {why}" if why else ""


def request_leak(engine: Engine, run_id: str, owner: str, client_id: str) -> str:
    """Queue what the server reads off one character's update: '' when queued, else why not."""
    why = engine.queue.read_update(run_id, owner, client_id, _stored(engine, run_id))
    return f"Cannot read that update: {why}" if why else ""


def request_comparison(engine: Engine, run_id: str, owner: str) -> str:
    """Queue the lesson's comparison of algorithms: '' when queued, else why not."""
    why = engine.queue.compare_algorithms(run_id, owner, _stored(engine, run_id))
    return f"Cannot compare: {why}" if why else ""


def request_resume(engine: Engine, run_id: str) -> str:
    """Queue a run whose TFF worker died again: '' when queued, else why not."""
    if engine.queue.resume(run_id):
        return ""
    return "This run cannot be resumed any more: train it again."


def progress_text(job: Job, queue: TrainingQueue) -> tuple[float, str]:
    """The fraction done and the progress line of a queued or running job."""
    history = list(job.history)
    total = job.config.rounds
    done = max(0, len(history) - 1)
    eta = queue.eta_seconds(job.job_id)
    left = f"about {eta:.0f} s left" if eta < 120 else f"about {eta / 60:.0f} min left"
    if job.stop_requested:
        return done / total, f"Stopping after the current round ({done} of {total} done)…"
    if job.state is JobState.QUEUED:
        ahead = queue.position(job.job_id)
        return 0.0, f"Waiting for the training queue: {ahead} run(s) ahead, {left}"
    if job.task is Task.PERSONALISE:
        return 0.5, (
            f"Fine-tuning a model for {job.extra_client} on its own lines, then every "
            f"character's gain · {left}"
        )
    if job.task is Task.LEAK:
        return 0.5, (
            f"One round of {job.extra_client}'s update, and what the server reads off it · {left}"
        )
    if job.task is Task.COMPARE:
        races = list(job.races)
        ran = sum(r.rounds_run for r in races)
        most = sum(r.max_rounds for r in races) or 1
        now = next((r for r in races if not r.finished), None)
        doing = f"{now.label}, round {now.rounds_run}" if now else "finishing"
        return min(1.0, ran / most), f"Comparing algorithms: {doing} · {left}"
    if job.in_baseline:
        budget = sum(r.cpu_seconds for r in history[1:]) or 1.0
        spent = sum(r.cpu_seconds for r in job.baseline[1:])
        return min(1.0, spent / budget), (
            f"Centralised baseline: {spent:.0f} of {budget:.0f} CPU seconds · {left}"
        )
    if not history:
        return 0.0, f"Round 0: evaluating the base model · {left}"
    spent = f" · privacy spent ε = {privacy.epsilon_after(job.config, done).epsilon:.2f}"
    lost = f" · {job.notices[-1]}" if job.notices else ""
    return done / total, (
        f"Round {done + 1} of {total} running · {left}{spent if job.config.private else ''}{lost}"
    )
