"""`fedtext worker`: TFF's worker for another machine's rounds, reachable only where asked.

TFF's `worker_binary` has no address flag: it listens on every interface. So it runs in a
private network namespace (a Linux user namespace: no privileges needed) that only a small
gate process shares with it; this process listens on the address asked for (loopback unless
`--host` says otherwise) and forwards each connection through the gate. The binary's output
goes to a log file, and the three processes stop together: SIGTERM, Ctrl-C or SIGKILL of this
one takes the gate and the binary with it (parent-death signals).

Where user namespaces are not allowed (Docker's default seccomp profile, some hardened
kernels) the binary can only run as it is, on every interface, which needs `--host 0.0.0.0`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import fcntl
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

from fedtext.distribution.binary import (
    READY_TIMEOUT_S,
    WorkerError,
    die_with_parent,
    launch,
    stop,
)

EVERY_INTERFACE = ("0.0.0.0", "::")


_CHUNK = 1 << 18
_CLONE_NEWUSER, _CLONE_NEWNET = 0x10000000, 0x40000000
_SIOCSIFFLAGS, _IFF_UP, _IFF_LOOPBACK, _IFF_RUNNING = 0x8914, 0x1, 0x8, 0x40


class WorkerStartError(WorkerError):
    """`fedtext worker` could not be started; one-line reason."""


def _enter_private_network() -> None:
    """In the gate's child before exec: a network of its own, with only loopback, up."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(_CLONE_NEWUSER | _CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    die_with_parent()  # after unshare, which could reset it
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        flags = _IFF_UP | _IFF_LOOPBACK | _IFF_RUNNING
        fcntl.ioctl(probe, _SIOCSIFFLAGS, struct.pack("16sH22x", b"lo", flags))


# ---------------------------------------------------------------- the gate, inside the namespace


def run_gate(control_fd: int, port: int, concurrent_clients: int, log_path: Path) -> int:
    """Start the binary here, then answer each byte on `control_fd` with a socket connected to
    it (SCM_RIGHTS); ends when either side goes."""
    control = socket.socket(fileno=control_fd)
    binary = launch(port, concurrent_clients, log_path)
    threading.Thread(target=_hang_up_when_done, args=(binary, control), daemon=True).start()
    try:
        control.sendall(b"R" if _wait_listening(port, binary) else b"F")
        while control.recv(1):
            with socket.create_connection(("127.0.0.1", port)) as connection:
                socket.send_fds(control, [b"C"], [connection.fileno()])
    except OSError:
        pass  # the binary or the forwarder went: both mean stop
    finally:
        stop(binary)
    return binary.returncode or 0


def _hang_up_when_done(binary: subprocess.Popen, control: socket.socket) -> None:
    binary.wait()
    with contextlib.suppress(OSError):
        control.shutdown(socket.SHUT_RDWR)


def _wait_listening(port: int, binary: subprocess.Popen) -> bool:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while binary.poll() is None and time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


# ---------------------------------------------------------------- the forwarder, outside


class Worker:
    """`fedtext worker`: the binary behind a gate, forwarded from `host:port`."""

    def __init__(self, port: int, host: str, log_path: Path, concurrent_clients: int):
        self.port, self.host, self.log_path = port, host, log_path
        self.concurrent_clients = concurrent_clients
        self._control: socket.socket | None = None
        self._control_lock = threading.Lock()
        self._children: list[subprocess.Popen] = []
        self.forwarded = {"in": 0, "out": 0}  # bytes, for the log

    def serve(self) -> int:
        """Runs until the binary ends or SIGTERM / Ctrl-C; returns an exit status."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        private, reason = self._start_gate()
        if not private:
            if self.host not in EVERY_INTERFACE:
                raise WorkerStartError(
                    f"cannot give TFF's worker a private network here ({reason}), and it "
                    "listens on every interface; pass --host 0.0.0.0 to accept that (on a "
                    "private network only)"
                )
            return self._serve_binary_as_is()
        return asyncio.run(self._forward())

    def _start_gate(self) -> tuple[bool, str]:
        outside, inside = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with open(self.log_path, "ab") as log_file:
                gate = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "fedtext.distribution.worker",
                        str(inside.fileno()),
                        str(self.port),
                        str(self.concurrent_clients),
                        str(self.log_path),
                    ],
                    stdin=subprocess.DEVNULL,
                    stderr=log_file,
                    pass_fds=[inside.fileno()],
                    preexec_fn=_enter_private_network,
                )
        except (subprocess.SubprocessError, OSError) as error:
            outside.close()
            return False, f"user namespaces are not allowed: {error}"
        finally:
            inside.close()
        self._children.append(gate)
        if outside.recv(1) != b"R":
            gate.wait()
            raise WorkerStartError(f"TFF's worker did not start; see {self.log_path}")
        self._control = outside
        return True, ""

    def _serve_binary_as_is(self) -> int:
        binary = launch(self.port, self.concurrent_clients, self.log_path)
        self._children.append(binary)
        print(
            f"fedtext worker: TFF worker_binary on port {self.port} of every interface "
            f"(no private network here; log {self.log_path})",
            flush=True,
        )
        return binary.wait()

    def _connect_inside(self) -> socket.socket:
        with self._control_lock:
            self._control.sendall(b"C")
            _, fds, _, _ = socket.recv_fds(self._control, 1, 1)
        if not fds:
            raise ConnectionError("the TFF worker has stopped")
        return socket.socket(fileno=fds[0])

    async def _forward(self) -> int:
        loop = asyncio.get_running_loop()
        stopped = loop.create_future()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, lambda: stopped.done() or stopped.set_result(0))
        # A thread, not the loop's executor: asyncio.run waits for its executor at the end.
        watch = threading.Thread(
            target=_set_when_done, args=(self._children[0], loop, stopped), daemon=True
        )
        watch.start()

        async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
            try:
                inner = await loop.run_in_executor(None, self._connect_inside)
                inner_reader, inner_writer = await asyncio.open_connection(sock=inner)
            except OSError:
                writer.close()
                return
            try:
                await asyncio.gather(
                    self._pump(reader, inner_writer, "in"), self._pump(inner_reader, writer, "out")
                )
            except asyncio.CancelledError:
                pass  # stopping; re-raised, 3.11's stream callback would log it as an error

        try:
            server = await asyncio.start_server(connection, self.host, self.port)
        except OSError as error:
            address = _join(self.host, self.port)
            raise WorkerStartError(f"cannot listen on {address}: {error.strerror}") from None
        print(
            f"fedtext worker: listening on {_join(self.host, self.port)} "
            f"(TFF worker_binary in a private network; log {self.log_path})",
            flush=True,
        )
        async with server:
            status = await stopped
        with open(self.log_path, "a") as log_file:  # what `python -m fedtext.bench` reads
            print(
                f"fedtext worker: forwarded {self.forwarded['in']} bytes in and "
                f"{self.forwarded['out']} bytes out",
                file=log_file,
            )
        return status

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, direction: str
    ) -> None:
        try:
            while data := await reader.read(_CHUNK):
                self.forwarded[direction] += len(data)
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()

    def stop(self) -> None:
        for child in self._children:
            stop(child)


def _set_when_done(gate: subprocess.Popen, loop, stopped) -> None:
    status = gate.wait()

    def finish():
        if not stopped.done():
            print("fedtext worker: TFF's worker stopped; see its log", file=sys.stderr)
            stopped.set_result(status or 1)

    with contextlib.suppress(RuntimeError):  # the loop has ended: stopping anyway
        loop.call_soon_threadsafe(finish)


def _join(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def serve(port: int, host: str, log_path: Path, concurrent_clients: int) -> int:
    """`fedtext worker`: serve TFF rounds on `host:port` until stopped."""
    worker = Worker(port, host, log_path, concurrent_clients)
    try:
        return worker.serve()
    finally:
        worker.stop()


def start_loopback(port: int, log_path: Path, timeout: float = READY_TIMEOUT_S) -> subprocess.Popen:
    """`python -m fedtext worker --port PORT` on this machine, returned once it answers; it
    stops when the calling thread's process ends (for tests and benchmarks)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "fedtext", "worker", "--port", str(port), "--log", str(log_path)],
        stdout=subprocess.DEVNULL,
        preexec_fn=die_with_parent,
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:  # it listens once TFF's worker is ready
        if process.poll() is not None:
            raise WorkerStartError(f"fedtext worker --port {port} exited; see {log_path}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    process.wait()
    raise WorkerStartError(f"fedtext worker --port {port} not ready after {timeout:.0f} s")


if __name__ == "__main__":  # the gate: python -m fedtext.distribution.worker FD PORT CLIENTS LOG
    fd, port, clients, log = sys.argv[1:5]
    sys.exit(run_gate(int(fd), int(port), int(clients), Path(log)))
