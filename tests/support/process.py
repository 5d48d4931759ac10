"""Running `yourouter` as a real process, the way a user does."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml

from tests.support.gateway import closed_port, http


def yourouter(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run a `yourouter` CLI command to completion."""
    return subprocess.run([sys.executable, "-m", "yourouter", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def write_config(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config))
    return path


@dataclass
class GatewayProcess:
    process: subprocess.Popen[str]
    url: str
    log_path: Path

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout=timeout)

    @property
    def log(self) -> str:
        return self.log_path.read_text()


@contextmanager
def serve_process(config_path: Path, *extra: str, ready_timeout: float = 30) -> Iterator[GatewayProcess]:
    """`yourouter serve --config FILE` on a free port; waits for /health; stops it (SIGTERM) afterwards."""
    port = closed_port()
    log_path = config_path.with_suffix(f".{port}.log")
    with open(log_path, "w") as log:
        process = subprocess.Popen([sys.executable, "-m", "yourouter", "serve", "--config", str(config_path),
                                    "--port", str(port), *extra], stdout=log, stderr=subprocess.STDOUT, text=True,
                                   start_new_session=True)
    handle = GatewayProcess(process, f"http://127.0.0.1:{port}", log_path)
    deadline = time.monotonic() + ready_timeout
    try:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"gateway exited with {process.returncode}:\n{handle.log}")
            try:
                if http("GET", handle.url + "/health", timeout=1).status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"gateway not ready after {ready_timeout}s:\n{handle.log}")
            time.sleep(0.05)
        yield handle
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
