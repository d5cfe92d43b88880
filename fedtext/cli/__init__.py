"""Command line: `python -m fedtext {tutorial,data,pretrain,finetune,evaluate,generate,personalise,
worker,leak}`. Bad input gets one line on stderr and exit status 2."""

from __future__ import annotations

import importlib
import os
import sys
import time
from collections.abc import Sequence

from fedtext.cli.args import build_parser
from fedtext.config import ConfigError
from fedtext.distribution import runtime
from fedtext.distribution.binary import WorkerError
from fedtext.model.weights import WeightsError
from fedtext.text.corpus import CorpusError
from fedtext.text.plays import DataError
from fedtext.text.prompt import PromptError

# Each command's module, imported when the command runs: `generate`, `data` and `worker` load no
# TensorFlow (seconds), the training commands do.
COMMANDS = {
    "tutorial": ("learning", "cmd_tutorial"),
    "data": ("text", "cmd_data"),
    "pretrain": ("learning", "cmd_pretrain"),
    "finetune": ("learning", "cmd_finetune"),
    "evaluate": ("learning", "cmd_evaluate"),
    "generate": ("text", "cmd_generate"),
    "personalise": ("learning", "cmd_personalise"),
    "worker": ("workers", "cmd_worker"),
    "communication": ("communication", "cmd_communication"),
    "leak": ("attacks", "cmd_leak"),
}
WITHOUT_TENSORFLOW = ("data", "generate", "worker")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    runtime.stop_on_sigterm()
    start = time.perf_counter()
    try:
        if args.command not in WITHOUT_TENSORFLOW:
            runtime.import_tensorflow(quiet=True)
        if getattr(args, "workers", None):
            runtime.use_workers(args.workers)
            runtime.install()  # every worker answers, or one line names those that do not
        module, function = COMMANDS[args.command]
        command = getattr(importlib.import_module(f"fedtext.cli.{module}"), function)
        return command(args)
    except (
        ConfigError,
        CorpusError,
        DataError,
        PromptError,
        WeightsError,
        WorkerError,
        FloatingPointError,
    ) as error:
        print(f"fedtext: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fedtext: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # the last line of defence: one line, no traceback
        if os.environ.get("FEDTEXT_DEBUG"):
            raise  # Python prints the traceback, and its cause's
        # fedtext's own failures (a round that failed, say) name what failed themselves.
        ours = type(error).__module__.startswith("fedtext.")
        said = str(error) if ours else f"unexpected {type(error).__name__}: {error}"
        print(f"fedtext: {said} (FEDTEXT_DEBUG=1 shows the traceback)", file=sys.stderr)
        return 1
    finally:
        runtime.shutdown()
        if os.environ.get("FEDTEXT_TIMING"):
            print(f"[{args.command} took {time.perf_counter() - start:.1f} s]", file=sys.stderr)
