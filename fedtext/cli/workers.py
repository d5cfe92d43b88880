"""`fedtext worker`: lend this machine's cores to another machine's rounds."""

from __future__ import annotations

import argparse

from fedtext.config import ConfigError
from fedtext.distribution.worker import serve
from fedtext.text.plays import cache_dir


def cmd_worker(args: argparse.Namespace) -> int:
    if not 0 < args.port < 65536:
        raise ConfigError(f"--port {args.port} is not a port from 1 to 65535")
    if args.clients_at_once < 1:
        raise ConfigError(f"--clients-at-once {args.clients_at_once} must be at least 1")
    log_path = args.log or cache_dir() / f"worker-{args.port}.log"
    return serve(args.port, args.host, log_path, args.clients_at_once)
