"""Run ``pairio serve`` as a subprocess on a free loopback port: for tests and benchmarks."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """A ``python -m pairio serve DIR`` subprocess; use as a context manager."""

    def __init__(self, directory: Path, settings: dict[str, Any], *, port: int | None = None,
                 log_level: str = "warning", args: tuple[str, ...] = ()) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / "pairio.json").write_text(json.dumps(settings, indent=2))
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        self.log_path = self.directory / "server.log"
        self.log_level = log_level
        self.args = tuple(args)

    def start(self, timeout: float = 20.0) -> ServerProcess:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pairio", "serve", str(self.directory), "--port", str(self.port),
             "--log-level", self.log_level, *self.args],
            stdout=self._log, stderr=subprocess.STDOUT, env=env,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"pairio serve exited with {self.process.returncode}:\n{self.log()}")
            try:
                if requests.get(f"{self.url}/api/v1/health", timeout=1).status_code == 200:
                    return self
            except (requests.ConnectionError, requests.Timeout):
                # Not listening yet, or (--workers) listening while the workers still start.
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"pairio serve did not answer within {timeout} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if getattr(self, "_log", None) is not None:
            self._log.close()

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def signed_request(
    url: str,
    channel: str,
    password: str,
    path: str,
    obj: Any = None,
    *,
    method: str = "POST",
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    **sign_options: Any,
) -> requests.Response:
    """Send one request signed as ``channel`` (``body`` overrides the JSON of ``obj``)."""
    from pairio.signing import sign_request

    if body is None:
        body = b"" if obj is None else json.dumps(obj).encode()
    signed = sign_request(channel, password, method, path, body, **sign_options)
    return requests.request(method, url + path, data=body or None,
                            headers={**signed, **(headers or {})}, timeout=10)
