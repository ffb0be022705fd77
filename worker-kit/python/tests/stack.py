"""A real nats-server and the real gateway as child processes, for the kit's tests. Standard
library only, so that the tests run with nothing but the installed kit.

The binaries: $NATS_SERVER_BIN, else nats-server on PATH; $OPENIM_GATEWAY_BIN, else
target/debug/openim-gateway of the repository ($OPENIM_GATEWAY_REPO, else the checkout these
tests are in)."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Optional

START_TIMEOUT_S = 20.0


def repository() -> Optional[Path]:
    """The repository's root, or None when these tests were copied out of it without
    $OPENIM_GATEWAY_REPO."""
    named = os.environ.get("OPENIM_GATEWAY_REPO")
    if named:
        return Path(named)
    root = Path(__file__).resolve().parents[3]
    return root if (root / "worker-kit" / "python" / "pyproject.toml").is_file() else None


def binaries_nats() -> str:
    """nats-server, or a RuntimeError."""
    nats = os.environ.get("NATS_SERVER_BIN") or shutil.which("nats-server")
    if not nats or not os.access(nats, os.X_OK):
        raise RuntimeError("no nats-server: set NATS_SERVER_BIN (scripts/install-nats)")
    return nats


def binaries() -> tuple:
    """(nats-server, gateway), or a RuntimeError saying which is missing."""
    nats = binaries_nats()
    root = repository()
    gateway = os.environ.get("OPENIM_GATEWAY_BIN") or \
        (str(root / "target" / "debug" / "openim-gateway") if root else "")
    if not gateway or not os.access(gateway, os.X_OK):
        raise RuntimeError("no gateway: set OPENIM_GATEWAY_BIN (cargo build -p openim-gateway)")
    return nats, gateway


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def clean_env() -> dict:
    return {name: value for name, value in os.environ.items()
            if not name.startswith(("GATEWAY_", "WORKER_", "NATS_")) and name != "RUST_LOG"}


class Child:
    """A child process; its stdout lines are kept, stderr goes to a file (read on failure)."""

    def __init__(self, argv: list, env: dict, cwd: Optional[str] = None) -> None:
        self.stderr = tempfile.TemporaryFile()
        self.lines: list = []
        self.changed = threading.Condition()
        self.proc = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=self.stderr)
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for raw in self.proc.stdout:
            with self.changed:
                self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self.changed.notify_all()

    def wait_for(self, prefix: str, timeout: float = START_TIMEOUT_S) -> Optional[str]:
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                for line in self.lines:
                    if line.startswith(prefix):
                        return line
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.proc.poll() is not None:
                    return None
                self.changed.wait(min(remaining, 0.1))

    def tail(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read().decode("utf-8", "replace")[-3000:]

    def stop(self) -> Optional[int]:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()
        self.stderr.close()
        return self.proc.returncode


class Stack:
    """nats-server and the gateway; `worker(argv)` starts a worker connected to them."""

    def __init__(self, gateway_env: Optional[dict] = None) -> None:
        nats, gateway = binaries()
        self.children: list = []
        try:
            self.nats_url = f"nats://127.0.0.1:{free_port()}"
            port = self.nats_url.rsplit(":", 1)[1]
            server = self._start([nats, "-a", "127.0.0.1", "-p", port], clean_env())
            deadline = time.monotonic() + START_TIMEOUT_S
            while not self._accepts(int(port)):
                if time.monotonic() > deadline or server.proc.poll() is not None:
                    raise RuntimeError(f"nats-server did not start:\n{server.tail()}")
                time.sleep(0.05)
            self.gateway = self._start([gateway], clean_env() | {
                "NATS_URL": self.nats_url, "GATEWAY_LISTEN": f"127.0.0.1:{free_port()}",
                "GATEWAY_SHUTDOWN_DELAY_MS": "0"} | (gateway_env or {}))
            line = self.gateway.wait_for("openim-gateway listening on")
            if line is None:
                raise RuntimeError(f"the gateway did not start:\n{self.gateway.tail()}")
            self.address = line.split("http://", 1)[1].strip()
        except BaseException:
            self.close()
            raise

    @staticmethod
    def _accepts(port: int) -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            return False

    def _start(self, argv: list, env: dict, cwd: Optional[str] = None) -> Child:
        child = Child(argv, env, cwd)
        self.children.append(child)
        return child

    def worker(self, script: str, cwd: Optional[str] = None,
               env: Optional[dict] = None) -> Child:
        """Runs `python script` with this interpreter (the one the kit is installed in) and
        waits for its readiness line; `env` adds variables."""
        child = self._start([sys.executable, script],
                            clean_env() | {"NATS_URL": self.nats_url} | (env or {}), cwd)
        if child.wait_for("worker ready on") is None:
            raise RuntimeError(f"the worker did not start:\n{child.tail()}")
        return child

    def post(self, command: str, body: bytes, headers: Optional[dict] = None) -> tuple:
        """POSTs a callback as OpenIM does: (status, X-Decision-Source, the JSON answer)."""
        host, port = self.address.rsplit(":", 1)
        connection = http.client.HTTPConnection(host, int(port), timeout=10)
        try:
            connection.request("POST", f"/callbackExample/{command}", body=body, headers={
                "Content-Type": "application/json; charset=utf-8", "operationID": "kit-test"}
                | (headers or {}))
            response = connection.getresponse()
            return (response.status, response.getheader("X-Decision-Source"),
                    json.loads(response.read()))
        finally:
            connection.close()

    def close(self) -> None:
        for child in reversed(self.children):
            child.stop()
