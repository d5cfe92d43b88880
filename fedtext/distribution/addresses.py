"""The addresses of `fedtext worker`s, as `--workers` and FEDTEXT_WORKERS give them."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class WorkerAddress:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_workers(text: str) -> tuple[WorkerAddress, ...]:
    """`HOST:PORT,HOST:PORT,...` (IPv6 as `[::1]:PORT`) -> addresses; ValueError in one line."""
    addresses = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        host, sep, port = item.rpartition(":")
        bracketed = host.startswith("[") and host.endswith("]")
        host = host[1:-1] if bracketed else host
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"worker {item!r} is not HOST:PORT with a port from 1 to 65535")
        if ":" in host or bracketed:
            try:
                if not bracketed:
                    raise ValueError
                ipaddress.IPv6Address(host)
            except ValueError:
                raise ValueError(
                    f"worker {item!r}: write an IPv6 address as [ADDRESS]:PORT"
                ) from None
        elif not all(c.isalnum() or c in ".-_" for c in host):
            raise ValueError(f"worker {item!r}: {host!r} is not a host name or address")
        addresses.append(WorkerAddress(host, int(port)))
    if not addresses:
        raise ValueError("no workers given: expected HOST:PORT,HOST:PORT,...")
    if len(set(addresses)) < len(addresses):
        raise ValueError(f"a worker is listed twice in {text!r}")
    return tuple(addresses)
