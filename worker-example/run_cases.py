#!/usr/bin/env python3
"""Runs worker-example/cases.json through a real nats-server, the real gateway and each worker.

For every worker (the Rust binary, the Python, the Node and the Go worker) and every suite of the
table: start the worker with the suite's settings, wait for `worker ready`, POST each case to
the gateway as OpenIM would, and compare the answer's JSON and its x-decision-source header.
Then send the protocol cases straight over NATS (deadline, service error, no copied headers),
and finally SIGTERM the worker, which must exit 0.

Standard library only. Prints every failure with the request, the expected and the actual
answer and the tail of the worker's stderr; ends with `N passed, N failed` and exits 1 if
anything failed (2 if the stack could not be started).

    python3 worker-example/run_cases.py --nats-server PATH --gateway target/debug/openim-gateway \
        [--workers rust,python,node,go] [--python .venv/bin/python] [--go-bin PATH]
"""

from __future__ import annotations

import argparse
import collections
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
FIXTURES = ROOT / "fixtures" / "openim"

READY_TIMEOUT_S = 20.0
HTTP_TIMEOUT_S = 10.0
# How long a request past its deadline is given to (wrongly) get a reply.
NO_REPLY_WAIT_S = 1.0
EXIT_TIMEOUT_S = 8.0


class StartError(Exception):
    pass


# --- Child processes --------------------------------------------------------------------------


class Child:
    """A child process whose stdout and stderr lines are collected by threads."""

    def __init__(self, name: str, argv: list, env: dict, cwd: Path = ROOT) -> None:
        self.name = name
        self.argv = argv
        self.stdout: list = []
        self.stderr = collections.deque(maxlen=400)
        self.lock = threading.Condition()
        self.proc = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for stream, sink in ((self.proc.stdout, self.stdout), (self.proc.stderr, self.stderr)):
            threading.Thread(target=self._pump, args=(stream, sink), daemon=True).start()

    def _pump(self, stream, sink) -> None:
        for raw in stream:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self.lock:
                sink.append(line)
                self.lock.notify_all()

    def wait_for(self, predicate, timeout: float, stream: str = "stdout"):
        """The first line of `stream` matching `predicate`, or None after `timeout` or exit."""
        deadline = time.monotonic() + timeout
        with self.lock:
            while True:
                lines = self.stdout if stream == "stdout" else self.stderr
                for line in list(lines):
                    if predicate(line):
                        return line
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.proc.poll() is not None:
                    return None
                self.lock.wait(min(remaining, 0.1))

    def tail(self, count: int = 25) -> str:
        with self.lock:
            lines = list(self.stderr)[-count:]
        return "\n".join("    | " + line for line in lines) or "    | (nothing)"

    def stop(self, sig=signal.SIGTERM, timeout: float = EXIT_TIMEOUT_S):
        """Sends `sig` and waits; kills after `timeout`. Returns (exit code or None, killed)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                return None, True
        return self.proc.returncode, False


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def base_env() -> dict:
    """The parent's environment without the settings the children read, so that nothing
    from the caller's shell changes what is tested."""
    return {name: value for name, value in os.environ.items()
            if not name.startswith(("GATEWAY_", "WORKER_", "NATS_")) and name != "RUST_LOG"}


def start_nats(binary: str) -> tuple:
    port = free_port()
    child = Child("nats-server", [binary, "-a", "127.0.0.1", "-p", str(port)], base_env())
    if child.wait_for(lambda line: "Server is ready" in line, READY_TIMEOUT_S, "stderr") is None:
        child.stop(signal.SIGKILL)
        raise StartError(f"nats-server did not start on port {port}:\n{child.tail()}")
    return child, f"nats://127.0.0.1:{port}"


def start_gateway(binary: str, nats_url: str) -> tuple:
    port = free_port()
    env = base_env() | {"NATS_URL": nats_url, "GATEWAY_LISTEN": f"127.0.0.1:{port}",
                        "RUST_LOG": "info"}
    child = Child("openim-gateway", [binary], env)
    if child.wait_for(lambda line: line.startswith("openim-gateway listening on"),
                      READY_TIMEOUT_S) is None:
        child.stop(signal.SIGKILL)
        raise StartError(f"the gateway did not start on port {port}:\n{child.tail()}")
    # It listens before it is connected to NATS; /readyz says 200 once it is.
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not readyz(port):
        if time.monotonic() > deadline or child.proc.poll() is not None:
            child.stop(signal.SIGKILL)
            raise StartError(f"the gateway's /readyz did not answer 200:\n{child.tail()}")
        time.sleep(0.05)
    return child, port


def readyz(port: int) -> bool:
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        connection.request("GET", "/readyz")
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


def build_go_worker() -> str:
    """Builds worker-example/go with `go` (GOPATH mode: no module proxy needed) into a temporary
    directory, the kit taken by path through a GOPATH that links to this repository."""
    import tempfile
    tmp = Path(tempfile.mkdtemp(prefix="run-cases-go."))
    home = tmp / "src" / "github.com" / "openim-gateway"
    home.mkdir(parents=True)
    (home / "openim-gateway").symlink_to(ROOT)
    binary = tmp / "openim-worker-example-go"
    env = os.environ | {"GO111MODULE": "off", "GOFLAGS": "", "GOPATH": f"{tmp}:/usr/share/gocode"}
    try:
        subprocess.run(["go", "build", "-o", str(binary),
                        "github.com/openim-gateway/openim-gateway/worker-example/go"],
                       env=env, check=True)
    except (OSError, subprocess.CalledProcessError) as error:
        raise StartError(f"cannot build the Go worker (scripts/install-go installs Go): {error}")
    return str(binary)


def worker_argv(name: str, python: str, go_bin: str | None = None) -> list:
    if name == "go":
        return [go_bin or build_go_worker()]
    if name == "rust":
        return [str(ROOT / "target" / "debug" / "openim-worker-example")]
    if name == "python":
        return [python, str(HERE / "python" / "worker.py")]
    if name == "node":
        return ["node", str(HERE / "node" / "worker.js")]
    raise SystemExit(f"unknown worker {name!r}: use rust, python, node or go")


# --- Bodies -----------------------------------------------------------------------------------


def go_json(value) -> bytes:
    """JSON as OpenIM's Go encoder writes it: compact, `<>&` and U+2028/U+2029 escaped,
    non-ASCII as UTF-8, a trailing newline."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    for char, escape in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                         ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(char, escape)
    return (text + "\n").encode("utf-8")


def case_body(case: dict) -> bytes:
    if "fixture" in case:
        return (FIXTURES / case["fixture"]).read_bytes()
    if "raw_body" in case:
        return case["raw_body"].encode("utf-8")
    return go_json(case["body"])


def shown(body: bytes, limit: int = 300) -> str:
    text = body.decode("utf-8", "replace").rstrip("\n")
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} characters)"


# --- HTTP through the gateway -----------------------------------------------------------------


def post(port: int, command: str, body: bytes) -> tuple:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=HTTP_TIMEOUT_S)
    try:
        connection.request("POST", f"/callbackExample/{command}", body=body, headers={
            "Content-Type": "application/json; charset=utf-8", "operationID": "cases-1"})
        response = connection.getresponse()
        return response.status, response.getheader("x-decision-source"), response.read()
    finally:
        connection.close()


# --- A minimal NATS client for the protocol cases ----------------------------------------------


class MiniNats:
    """Just enough of the NATS text protocol to send one request with headers and read the
    reply with its headers: CONNECT, PING/PONG, SUB, HPUB, MSG/HMSG."""

    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("nats://").rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=5)
        self.buffer = b""
        info = self._line()
        if not info.startswith(b"INFO "):
            raise StartError(f"not a NATS server: {info!r}")
        self.sock.sendall(b'CONNECT {"verbose":false,"pedantic":false,"headers":true,'
                          b'"no_responders":true,"protocol":1,"name":"run_cases"}\r\nPING\r\n')
        self._expect_pong()
        self.inbox = f"_INBOX.run_cases.{os.getpid()}.{time.monotonic_ns()}"
        self.sock.sendall(f"SUB {self.inbox} 1\r\nPING\r\n".encode())
        self._expect_pong()

    def close(self) -> None:
        self.sock.close()

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("nats-server closed the connection")
        self.buffer += data

    def _line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            self._fill()
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line

    def _bytes(self, count: int) -> bytes:
        while len(self.buffer) < count + 2:
            self._fill()
        data, self.buffer = self.buffer[:count], self.buffer[count + 2:]
        return data

    def _expect_pong(self) -> None:
        while True:
            line = self._line()
            if line == b"PONG":
                return
            if line.startswith(b"-ERR"):
                raise StartError(f"nats-server: {line.decode()}")

    def request(self, subject: str, headers: dict, body: bytes, timeout: float):
        """Sends one request; returns (headers dict, body) or None when nothing comes back."""
        head = "NATS/1.0\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        head_bytes = head.encode()
        self.sock.sendall(f"HPUB {subject} {self.inbox} {len(head_bytes)} "
                          f"{len(head_bytes) + len(body)}\r\n".encode()
                          + head_bytes + body + b"\r\n")
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self.sock.settimeout(remaining)
            try:
                line = self._line()
            except socket.timeout:
                return None
            parts = line.split(b" ")
            if parts[0] == b"PING":
                self.sock.sendall(b"PONG\r\n")
            elif parts[0] == b"MSG":
                return {}, self._bytes(int(parts[-1]))
            elif parts[0] == b"HMSG":
                header_len, total = int(parts[-2]), int(parts[-1])
                data = self._bytes(total)
                return parse_headers(data[:header_len]), data[header_len:]
            elif parts[0] == b"-ERR":
                raise ConnectionError(line.decode())


def parse_headers(block: bytes) -> dict:
    lines = block.decode("utf-8", "replace").split("\r\n")
    headers = {"_status": lines[0]}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip()] = value.strip()
    return headers


# --- Running ----------------------------------------------------------------------------------


class Report:
    def __init__(self) -> None:
        self.passed = 0
        self.failures: list = []

    def ok(self) -> None:
        self.passed += 1

    def fail(self, title: str, details: str) -> None:
        self.failures.append(title)
        print(f"FAIL {title}\n{details}\n", flush=True)


def run_http_case(report: Report, label: str, command: str, gateway_port: int, case: dict,
                  worker: Child) -> None:
    body = case_body(case)
    expected_answer = case["expect"]["answer"]
    expected_source = case["expect"]["source"]
    try:
        status, source, raw = post(gateway_port, command, body)
    except OSError as error:
        report.fail(label, f"  request:  {shown(body)}\n  error:    {error}\n"
                    f"  worker stderr (tail):\n{worker.tail()}")
        return
    try:
        answer = json.loads(raw)
    except ValueError:
        answer = None
    if status == 200 and answer == expected_answer and source == expected_source:
        report.ok()
        return
    report.fail(label, "\n".join([
        f"  request:  {shown(body)}",
        f"  expected: 200, x-decision-source: {expected_source}, "
        f"{json.dumps(expected_answer, ensure_ascii=False)}",
        f"  got:      {status}, x-decision-source: {source}, {shown(raw)}",
        f"  worker stderr (tail):\n{worker.tail()}",
    ]))


def run_protocol_case(report: Report, label: str, subject: str, nats_url: str, case: dict,
                      worker: Child) -> None:
    body = case_body(case)
    now_ms = time.time_ns() // 1_000_000
    deadline = {"future": str(now_ms + 5000), "past": str(now_ms - 1000)}.get(
        case["deadline"], case["deadline"])
    sent_headers = {"X-Request-Id": "0190f5f8-0000-7000-8000-00000000cafe",
                    "X-Callback-Command": subject.rsplit(".", 1)[-1],
                    "X-Deadline-Unix-Ms": deadline, "X-Timeout-Ms": "5000",
                    "X-Case-Marker": "must-not-come-back"}
    expect = case["expect"]
    client = MiniNats(nats_url)
    try:
        wait = NO_REPLY_WAIT_S if expect["reply"] == "none" else 5.0
        reply = client.request(subject, sent_headers, body, wait)
        # A live request right after shows the worker is still there (a "no reply" that only
        # means a dead worker would prove nothing).
        alive = expect["reply"] != "none" or client.request(
            subject, dict(sent_headers, **{"X-Deadline-Unix-Ms": str(now_ms + 60_000)}),
            (FIXTURES / "before_set_group_member_info.role_only.json").read_bytes(), 5.0)
    finally:
        client.close()
    problems = []
    if expect["reply"] == "none":
        if reply is not None:
            problems.append(f"a reply came back: {reply}")
        if not alive:
            problems.append("the worker did not answer the live request sent after it")
    elif reply is None:
        problems.append("no reply within 5 s")
    else:
        headers, data = reply
        copied = sorted(name for name in sent_headers if name in headers)
        if copied:
            problems.append(f"the reply copies request headers {copied}")
        if headers.get("_status", "NATS/1.0").split(" ")[1:2] == ["503"]:
            problems.append("no responders: the worker is not subscribed")
        elif expect["reply"] == "answer":
            if "Nats-Service-Error" in headers:
                problems.append(f"unexpected service error {headers}")
            try:
                answer = json.loads(data)
            except ValueError:
                answer = f"not JSON: {shown(data)}"
            if answer != expect["answer"]:
                problems.append(f"expected {json.dumps(expect['answer'])}, got {answer}")
        else:
            if not headers.get("Nats-Service-Error"):
                problems.append(f"expected a Nats-Service-Error header, got headers {headers} "
                                f"and body {shown(data)}")
            if headers.get("Nats-Service-Error-Code") != expect["code"]:
                problems.append(f"expected Nats-Service-Error-Code {expect['code']}, got "
                                f"{headers.get('Nats-Service-Error-Code')}")
            if data:
                problems.append(f"expected an empty body, got {shown(data)}")
    if problems:
        report.fail(label, f"  request (over NATS, X-Deadline-Unix-Ms {deadline}): "
                    f"{shown(body)}\n" + "".join(f"  problem:  {p}\n" for p in problems)
                    + f"  worker stderr (tail):\n{worker.tail()}")
    else:
        report.ok()


def run_worker(report: Report, name: str, argv: list, table: dict, nats_url: str,
               gateway_port: int, only: str | None) -> None:
    command = table["command"]
    subject = f"openim.callback.{command}"
    for index, suite in enumerate(table["suites"]):
        env = base_env() | {"NATS_URL": nats_url, "RUST_LOG": "info"} | suite["env"]
        started = time.monotonic()
        worker = Child(name, argv, env)
        if worker.wait_for(lambda line: "worker ready" in line, READY_TIMEOUT_S) is None:
            code, _ = worker.stop(signal.SIGKILL)
            report.fail(f"{name} / {suite['name']}: start",
                        f"  {' '.join(argv)} did not print `worker ready` within "
                        f"{READY_TIMEOUT_S:.0f} s (exit code {code}, env {suite['env']})\n"
                        f"  stdout: {worker.stdout}\n  worker stderr (tail):\n{worker.tail()}")
            continue
        ready_ms = (time.monotonic() - started) * 1000
        cases = [c for c in suite["cases"] if not only or only in c["name"]]
        for case in cases:
            run_http_case(report, f"{name} / {suite['name']} / {case['name']}", command,
                          gateway_port, case, worker)
        if index == 0:
            for case in table.get("protocol", []):
                if not only or only in case["name"]:
                    run_protocol_case(report, f"{name} / protocol / {case['name']}", subject,
                                      nats_url, case, worker)
        code, killed = worker.stop(signal.SIGTERM)
        label = f"{name} / {suite['name']}: SIGTERM"
        if code == 0:
            report.ok()
        else:
            report.fail(label, f"  expected exit code 0 within {EXIT_TIMEOUT_S:.0f} s, got "
                        f"{'killed' if killed else code}\n  worker stderr (tail):\n{worker.tail()}")
        print(f"  {name:6} {suite['name']}: {len(cases)} cases (ready in {ready_ms:.0f} ms)",
              flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nats-server", required=True, help="the nats-server executable")
    parser.add_argument("--gateway", default=str(ROOT / "target" / "debug" / "openim-gateway"))
    parser.add_argument("--workers", default="rust,python,node",
                        help="comma-separated: rust, python, node, go")
    parser.add_argument("--go-bin", help="the Go worker, built; else built here with `go`")
    parser.add_argument("--python", default=sys.executable,
                        help="the interpreter that has nats-py, for the Python worker")
    parser.add_argument("--cases", default=str(HERE / "cases.json"))
    parser.add_argument("--only", help="run only the cases whose name contains this text")
    args = parser.parse_args()

    table = json.loads(Path(args.cases).read_text("utf-8"))
    report = Report()
    children = []
    try:
        nats, nats_url = start_nats(args.nats_server)
        children.append(nats)
        gateway, gateway_port = start_gateway(args.gateway, nats_url)
        children.append(gateway)
        for name in [w.strip() for w in args.workers.split(",") if w.strip()]:
            run_worker(report, name, worker_argv(name, args.python, args.go_bin), table, nats_url,
                       gateway_port, args.only)
            if gateway.proc.poll() is not None:
                raise StartError(f"the gateway exited ({gateway.proc.returncode}):\n"
                                 f"{gateway.tail()}")
    except StartError as error:
        print(f"cannot run the cases: {error}", file=sys.stderr)
        return 2
    finally:
        for child in reversed(children):
            child.stop(signal.SIGTERM, 5)
    if report.failures:
        print(f"failed ({len(report.failures)}):")
        for title in report.failures:
            print(f"  - {title}")
    print(f"cases: {report.passed} passed, {len(report.failures)} failed")
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
