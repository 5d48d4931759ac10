"""`serve --workers N`: import and migrate once, then fork N workers that share one listening socket.

uvicorn's own multi-worker mode spawns a fresh interpreter per worker, and each re-imports the gateway (~0.8 s)
after the parent has already run the migrations: 2.65 s to start two workers. Forking a parent that has imported
everything (the gunicorn `--preload` model) starts a worker in the time it takes to build its `Gateway`.

The parent forks while it holds no event loop, thread or connection: the migration's loop and engine are closed
first. Each worker builds its own gateway, engine and pools, and tells the parent through a pipe once it serves.
The parent then only supervises:

- SIGTERM / SIGINT: forwarded as SIGTERM to every worker (uvicorn's graceful shutdown, then the ledger flush);
  the parent exits when all have;
- a worker that exits before it served (bad config, database unreachable, a crash while starting) stops them all,
  and `serve` exits with its status: a restart would fail the same way, forever;
- a worker that exits after it served is replaced, as uvicorn's supervisor does.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
import traceback
from collections.abc import Callable
from types import FrameType
from typing import Any

log = logging.getLogger("yourouter")

STARTUP_FAILURE = 3  # uvicorn's exit status when the lifespan startup fails

AppFactory = Callable[[], Any]


def preload_server_modules(options: dict[str, Any]) -> None:
    """Import what uvicorn would import in each worker (loop, protocol, lifespan), so the fork shares it."""
    import uvicorn.lifespan.on  # noqa: F401
    import uvicorn.protocols.http.httptools_impl  # noqa: F401

    if options.get("loop") == "uvloop":
        import uvloop  # noqa: F401


def bind(host: str, port: int, backlog: int = 2048) -> socket.socket:
    """The listening socket every worker inherits (uvicorn's `Config.bind_socket`, minus its log line). It listens
    from here on (2048 is uvicorn's backlog): connections made while the workers start wait to be accepted instead
    of being refused."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(backlog)
    sock.set_inheritable(True)
    return sock


class Supervisor:
    """Forks `workers` processes that each run `uvicorn.Server(build_app())` on `sock`, and keeps them running."""

    def __init__(self, build_app: AppFactory, options: dict[str, Any], workers: int, sock: socket.socket) -> None:
        self.build_app = build_app
        self.options = options
        self.workers = workers
        self.sock = sock
        self.children: dict[int, int] = {}  # pid -> read end of the pipe it writes one byte to once serving
        self.stopping = False
        self.exit_code = 0

    def run(self) -> int:
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            for _ in range(self.workers):
                self._fork()
            while self.children:
                try:
                    pid, status = os.wait()
                except ChildProcessError:
                    break
                self._reap(pid, os.waitstatus_to_exitcode(status))
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.sock.close()
        return self.exit_code

    def _reap(self, pid: int, code: int) -> None:
        ready_pipe = self.children.pop(pid, None)
        if ready_pipe is None:
            return
        served = _read_ready(ready_pipe)
        if self.stopping:
            return
        if not served:
            log.error("worker %d exited with status %d before it served; stopping", pid, code)
            self.exit_code = code if code > 0 else STARTUP_FAILURE
            self.stop()
            return
        log.warning("worker %d exited unexpectedly (status %d); starting a new one", pid, code)
        self._fork()

    def stop(self) -> None:
        self.stopping = True
        for pid in list(self.children):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.stop()

    def _fork(self) -> None:
        if threading.active_count() > 1:  # forking a process with threads can deadlock the child
            log.warning("forking with %d threads running", threading.active_count())
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read)
            for other in self.children.values():
                os.close(other)
            os._exit(self._worker(write))
        os.close(write)
        os.set_blocking(read, False)
        self.children[pid] = read

    def _worker(self, ready_pipe: int) -> int:
        """The child: never returns into the parent's code (the caller `_exit`s with the status)."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)  # uvicorn installs its own once serving
        code = 1
        try:
            import uvicorn

            class Server(uvicorn.Server):
                async def startup(self, sockets: list[socket.socket] | None = None) -> None:
                    await super().startup(sockets)
                    if not self.should_exit:
                        os.write(ready_pipe, b"1")

            server = Server(uvicorn.Config(self.build_app(), **self.options))
            server.run(sockets=[self.sock])
            code = 0 if server.started else STARTUP_FAILURE
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            traceback.print_exc()
        finally:
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
        return code


def _read_ready(pipe: int) -> bool:
    try:
        return os.read(pipe, 1) == b"1"
    except BlockingIOError:
        return False
    finally:
        os.close(pipe)
