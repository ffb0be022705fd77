"""openim_worker: the NATS side of an openim-gateway worker, so that a worker is only its rules.

You write a handler that takes a typed request and returns a decision made with `allow()`,
`reject(code, msg)` or `modify(**fields)`; `run()` does the rest:

- subscribes to `{WORKER_SUBJECT_PREFIX}.{command}` in the queue group `openim-workers`
  (one subscription per command you pass), on the servers of `NATS_URL`;
- skips a message whose `X-Deadline-Unix-Ms` has passed (the gateway has already answered
  OpenIM with its default, nobody waits for this reply);
- replies to the message's reply subject with the decision as JSON, without copying the
  request's headers onto the reply;
- replies with an empty body and the headers `Nats-Service-Error` / `Nats-Service-Error-Code`
  (400 when the body is not JSON or not the command's request, 500 when the handler raises),
  so that the gateway answers its default at once instead of waiting for its timeout;
- runs at most `WORKER_CONCURRENCY` handlers at a time;
- prints `worker ready on ...` on stdout once the server has confirmed the subscriptions;
- on SIGTERM or SIGINT drains: the server stops sending, messages already received are still
  answered (up to 5 s), the replies are flushed, and `run()` returns 0.

Example::

    import openim_worker as ow

    def decide(request: ow.SetGroupMemberInfoRequest) -> ow.Decision:
        if request.role_level == 100:
            return ow.reject(5005, "no owner changes here")
        return ow.allow()

    raise SystemExit(ow.run({ow.BEFORE_SET_GROUP_MEMBER_INFO: decide}))

Only `run()` and `Worker.serve()` need the nats-py package; everything else is plain Python and
is tested without a server.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import re
import signal
import sys
import time
import unicodedata
import urllib.parse
from typing import Any, Awaitable, Callable, Dict, Mapping, Optional, Union

log = logging.getLogger("openim_worker")

# --- Names shared with the gateway -----------------------------------------------------------

DEFAULT_SUBJECT_PREFIX = "openim.callback"
QUEUE_GROUP = "openim-workers"
BEFORE_SET_GROUP_MEMBER_INFO = "callbackBeforeSetGroupMemberInfoCommand"

HEADER_REQUEST_ID = "X-Request-Id"
HEADER_DEADLINE_UNIX_MS = "X-Deadline-Unix-Ms"
HEADER_SERVICE_ERROR = "Nats-Service-Error"
HEADER_SERVICE_ERROR_CODE = "Nats-Service-Error-Code"

# --- Settings ---------------------------------------------------------------------------------

NATS_URL = "NATS_URL"
WORKER_SUBJECT_PREFIX = "WORKER_SUBJECT_PREFIX"
WORKER_CONCURRENCY = "WORKER_CONCURRENCY"
WORKER_LOG_LEVEL = "WORKER_LOG_LEVEL"

DEFAULT_NATS_URL = "nats://127.0.0.1:4222"
DEFAULT_CONCURRENCY = 64
MAX_CONCURRENCY = 10_000
LOG_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING,
              "warning": logging.WARNING, "error": logging.ERROR}

# How often the client pings the server, so that a half-open connection is noticed quickly.
PING_INTERVAL_S = 5
# How long shutdown waits for in-flight replies and the final flush.
SHUTDOWN_GRACE_S = 5.0

EXIT_OK = 0
EXIT_CANNOT_RUN = 1
EXIT_BAD_SETTINGS = 2

NATS_SCHEMES = ("nats", "tls", "ws", "wss")


class SettingsError(Exception):
    """A setting that cannot be used; str() is the whole line to print before exiting 2."""

    def __init__(self, variable: str, value: str, rule: str) -> None:
        super().__init__(f"{variable}={json.dumps(value, ensure_ascii=False)} is not valid: {rule}")
        self.variable = variable


# Unicode's White_Space property, the set Rust's `char::is_whitespace` uses. Python's
# `str.isspace()` and `str.split()` differ from it (they also split on U+001C..U+001F), so the
# rules and the subject check use this explicit set to decide exactly as the Rust worker does.
WHITESPACE_CHARS = ("\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
                    "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000")
_WHITESPACE_RUN = re.compile("[" + re.escape(WHITESPACE_CHARS) + "]+")


def normalise_whitespace(text: str) -> str:
    """Trims and collapses every run of Unicode whitespace into one ASCII space."""
    return " ".join(part for part in _WHITESPACE_RUN.split(text) if part)


def is_valid_subject(subject: str) -> bool:
    """Dot-separated non-empty tokens without whitespace, control characters or wildcards."""
    return bool(subject) and all(
        token and all(c not in WHITESPACE_CHARS and unicodedata.category(c) != "Cc"
                      and c not in "*>" for c in token)
        for token in subject.split(".")
    )


def parse_nats_urls(value: str) -> list:
    """`nats://h:p`, `tls://`, `ws://`, `wss://` or a bare `host:port`; one or a comma list."""
    rule = "must be a NATS URL such as nats://127.0.0.1:4222, or a comma-separated list of them"
    servers = []
    for entry in value.split(","):
        entry = entry.strip()
        url = entry if "://" in entry else f"nats://{entry}"
        try:
            parts = urllib.parse.urlsplit(url)
            parts.port  # raises ValueError for a port that is not a number in range
        except ValueError:
            raise SettingsError(NATS_URL, value, rule) from None
        if not entry or parts.scheme not in NATS_SCHEMES or not parts.hostname:
            raise SettingsError(NATS_URL, value, rule)
        servers.append(url)
    return servers


def parse_int_setting(env: Mapping[str, str], variable: str, default: int, low: int,
                      high: int) -> int:
    """An unsigned decimal integer in low..=high (a leading `+` allowed, no spaces)."""
    value = env.get(variable)
    if value is None:
        return default
    if re.fullmatch(r"\+?[0-9]+", value) and low <= int(value) <= high:
        return int(value)
    raise SettingsError(variable, value, f"must be an integer in {low}..={high}")


@dataclasses.dataclass(frozen=True)
class Settings:
    """What every worker built on this module reads from the environment."""

    nats_servers: list
    subject_prefix: str = DEFAULT_SUBJECT_PREFIX
    concurrency: int = DEFAULT_CONCURRENCY
    log_level: int = logging.INFO

    @classmethod
    def from_env(cls, env: Optional[Mapping[str, str]] = None) -> "Settings":
        env = os.environ if env is None else env
        servers = parse_nats_urls(env.get(NATS_URL, DEFAULT_NATS_URL))
        prefix = env.get(WORKER_SUBJECT_PREFIX, DEFAULT_SUBJECT_PREFIX)
        if not is_valid_subject(prefix):
            raise SettingsError(WORKER_SUBJECT_PREFIX, prefix,
                                "must be a NATS subject without wildcards or whitespace, "
                                "such as openim.callback")
        concurrency = parse_int_setting(env, WORKER_CONCURRENCY, DEFAULT_CONCURRENCY, 1,
                                        MAX_CONCURRENCY)
        level_name = env.get(WORKER_LOG_LEVEL, "").strip().lower() or "info"
        if level_name not in LOG_LEVELS:
            raise SettingsError(WORKER_LOG_LEVEL, env[WORKER_LOG_LEVEL],
                                "must be one of debug, info, warn, error")
        return cls(servers, prefix, concurrency, LOG_LEVELS[level_name])


# --- Decisions --------------------------------------------------------------------------------

INT32_MAX = 2**31 - 1
INT32_MIN = -(2**31)
MIN_REJECT_ERR_CODE = 100
COMMON_FIELDS = ("actionCode", "errCode", "errMsg", "errDlt", "nextCode")


@dataclasses.dataclass(frozen=True)
class Decision:
    """An OpenIM answer: the five common fields plus the command's own fields to write."""

    action_code: int = 0
    err_code: int = 0
    err_msg: str = ""
    err_dlt: str = ""
    next_code: int = 0
    fields: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def is_reject(self) -> bool:
        return self.action_code == 0 and self.next_code == 1

    def to_dict(self) -> Dict[str, Any]:
        answer = {"actionCode": self.action_code, "errCode": self.err_code,
                  "errMsg": self.err_msg, "errDlt": self.err_dlt, "nextCode": self.next_code}
        answer.update(self.fields)
        return answer

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":")).encode()


def allow() -> Decision:
    """Let the operation through unchanged."""
    return Decision()


def reject(err_code: int, err_msg: str, err_dlt: str = "") -> Decision:
    """Refuse the operation. OpenIM shows `err_code` (at least 100) and `err_msg` to the user."""
    if isinstance(err_code, bool) or not isinstance(err_code, int) \
            or not MIN_REJECT_ERR_CODE <= err_code <= INT32_MAX:
        raise ValueError(f"a reject's errCode must be an integer in 100..={INT32_MAX}")
    if not isinstance(err_msg, str) or not isinstance(err_dlt, str):
        raise TypeError("errMsg and errDlt must be strings")
    return Decision(err_code=err_code, err_msg=err_msg, err_dlt=err_dlt, next_code=1)


def modify(**fields: Any) -> Decision:
    """Allow, writing these fields (OpenIM's JSON names, e.g. `nickName="Bob"`).

    A field given as None is left out: absent means "keep the request's value", and setting
    a field the request had `null` would add a change nobody asked for.
    """
    common = [name for name in fields if name.lower() in (f.lower() for f in COMMON_FIELDS)]
    if common:
        raise ValueError(f"modify() sets the command's own fields, not {common}")
    return Decision(fields={name: value for name, value in fields.items() if value is not None})


# --- Requests ---------------------------------------------------------------------------------


class BadRequest(Exception):
    """The body is not the command's request. The message goes in a header: never quote the
    body in it."""


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_json(payload: bytes) -> Any:
    """Strict JSON as OpenIM writes it: UTF-8, no NaN/Infinity, nothing after the value."""
    try:
        text = payload.decode("utf-8") if isinstance(payload, (bytes, bytearray)) else payload
        return json.loads(text, parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError):
        raise BadRequest("body is not valid JSON") from None


def _field(obj: Mapping[str, Any], command: str, name: str, kind: str, required: bool) -> Any:
    if name not in obj:
        if required:
            raise BadRequest(f"body is not a {command} request (missing {name})")
        return None
    value = obj[name]
    if value is None and not required:
        return None
    if kind == "string" and isinstance(value, str):
        return value
    if kind == "int32" and isinstance(value, int) and not isinstance(value, bool) \
            and INT32_MIN <= value <= INT32_MAX:
        return value
    raise BadRequest(f"body is not a {command} request ({name} must be {kind_name(kind)})")


def kind_name(kind: str) -> str:
    return {"string": "a string", "int32": "a 32-bit integer"}[kind]


@dataclasses.dataclass(frozen=True)
class SetGroupMemberInfoRequest:
    """callbackBeforeSetGroupMemberInfoCommand. None means "not changing" (`null` in JSON);
    `""` is a value (clearing the nickname or the avatar)."""

    callback_command: str
    group_id: str
    user_id: str
    nick_name: Optional[str] = None
    face_url: Optional[str] = None
    role_level: Optional[int] = None
    ex: Optional[str] = None

    @classmethod
    def from_json(cls, obj: Any) -> "SetGroupMemberInfoRequest":
        command = BEFORE_SET_GROUP_MEMBER_INFO
        if not isinstance(obj, dict):
            raise BadRequest(f"body is not a {command} request (not a JSON object)")
        return cls(
            callback_command=_field(obj, command, "callbackCommand", "string", True),
            group_id=_field(obj, command, "groupID", "string", True),
            user_id=_field(obj, command, "userID", "string", True),
            nick_name=_field(obj, command, "nickName", "string", False),
            face_url=_field(obj, command, "faceURL", "string", False),
            role_level=_field(obj, command, "roleLevel", "int32", False),
            ex=_field(obj, command, "ex", "string", False),
        )


def json_object(obj: Any) -> Dict[str, Any]:
    """The parser for commands without a typed request: any JSON object, as a dict."""
    if not isinstance(obj, dict):
        raise BadRequest("body is not a JSON object")
    return obj


# Typed requests per command; other commands get the JSON object as a dict.
REQUEST_TYPES: Dict[str, Callable[[Any], Any]] = {
    BEFORE_SET_GROUP_MEMBER_INFO: SetGroupMemberInfoRequest.from_json,
}

Handler = Callable[[Any], Union[Decision, Awaitable[Decision]]]


# --- One message, without NATS ----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Reply:
    """What to publish on the reply subject: a body, and headers only for service errors."""

    body: bytes
    headers: Optional[Dict[str, str]] = None
    decision: Optional[Decision] = None


def service_error(code: str, description: str) -> Reply:
    description = " ".join(description.splitlines())  # a header value cannot hold a line break
    return Reply(b"", {HEADER_SERVICE_ERROR: description, HEADER_SERVICE_ERROR_CODE: code})


async def respond(handler: Handler, parse: Callable[[Any], Any], payload: bytes) -> Reply:
    """Parses the body, runs the handler and turns the outcome into the reply."""
    try:
        request = parse(parse_json(payload))
    except BadRequest as error:
        return service_error("400", f"bad request: {error}")
    except Exception as error:  # noqa: BLE001 - a parser bug still gets an answer
        log.error("the request parser failed", exc_info=True)
        return service_error("500", f"internal error: the request parser failed "
                                    f"({type(error).__name__})")
    try:
        decision = handler(request)
        if asyncio.iscoroutine(decision) or isinstance(decision, asyncio.Future):
            decision = await decision
        if not isinstance(decision, Decision):
            raise TypeError(f"the handler returned {type(decision).__name__}, not a Decision")
        return Reply(decision.to_json(), None, decision)
    except Exception as error:  # noqa: BLE001 - any handler failure becomes a service error
        log.error("the handler failed", exc_info=True)
        return service_error("500", f"internal error: the handler failed ({type(error).__name__})")


def deadline_unix_ms(headers: Optional[Mapping[str, str]]) -> Optional[int]:
    """The request's deadline, or None when absent or malformed (a malformed one is ignored
    rather than trusted: dropping a request somebody waits for is the worse mistake)."""
    value = (headers or {}).get(HEADER_DEADLINE_UNIX_MS)
    if value is None:
        return None
    value = value.strip()
    if re.fullmatch(r"\+?[0-9]+", value) and int(value) < 2**64:
        return int(value)
    log.debug("ignoring a malformed %s", HEADER_DEADLINE_UNIX_MS)
    return None


def now_unix_ms() -> int:
    return time.time_ns() // 1_000_000


def is_past(deadline: int, now: int) -> bool:
    """Past only once the clock is after the deadline (the deadline millisecond itself is on
    time)."""
    return now > deadline


# --- The NATS loop ----------------------------------------------------------------------------


class Worker:
    """Subscriptions and in-flight messages of one connection. `client` needs `publish`,
    `subscribe`, `flush` and `close` as in nats-py; tests pass a fake."""

    def __init__(self, client: Any, settings: Settings, handlers: Mapping[str, Handler],
                 parsers: Optional[Mapping[str, Callable[[Any], Any]]] = None) -> None:
        if not handlers:
            raise ValueError("give at least one command and its handler")
        self.client = client
        self.settings = settings
        self.handlers = dict(handlers)
        self.parsers = {command: (parsers or {}).get(command) or REQUEST_TYPES.get(command, json_object)
                        for command in self.handlers}
        self.slots = asyncio.Semaphore(settings.concurrency)
        self.in_flight: set = set()
        self.subscriptions: list = []

    def subject(self, command: str) -> str:
        return f"{self.settings.subject_prefix}.{command}"

    async def subscribe(self) -> None:
        """Joins the queue group on every command's subject and waits for the server to have
        them: `flush` is a PING/PONG round trip, so the server has processed the SUBs."""
        for command in self.handlers:
            async def on_message(msg: Any, command: str = command) -> None:
                await self.dispatch(command, msg)
            self.subscriptions.append(await self.client.subscribe(
                self.subject(command), queue=QUEUE_GROUP, cb=on_message))
        await self.client.flush()

    async def dispatch(self, command: str, msg: Any) -> None:
        """Called by the subscription for each message, one at a time: waits for a free slot,
        then handles the message in its own task. Waiting here is the back-pressure."""
        await self.slots.acquire()
        task = asyncio.get_running_loop().create_task(self._handle_then_release(command, msg))
        self.in_flight.add(task)
        task.add_done_callback(self.in_flight.discard)

    async def _handle_then_release(self, command: str, msg: Any) -> None:
        try:
            await self.handle(command, msg)
        except Exception:  # noqa: BLE001 - one message never stops the worker
            log.exception("a message failed")
        finally:
            self.slots.release()

    async def handle(self, command: str, msg: Any) -> None:
        """Answers one message, or deliberately does not (no reply subject, deadline passed)."""
        headers = getattr(msg, "headers", None) or {}
        request_id = headers.get(HEADER_REQUEST_ID, "-")
        if not msg.reply:
            log.warning("request_id=%s message without a reply subject on %s: skipped",
                        request_id, msg.subject)
            return
        deadline = deadline_unix_ms(headers)
        if deadline is not None:
            now = now_unix_ms()
            if is_past(deadline, now):
                log.info("request_id=%s late_by_ms=%d deadline passed: nobody waits for this "
                         "answer, not replying", request_id, now - deadline)
                return
        reply = await respond(self.handlers[command], self.parsers[command], msg.data)
        if reply.headers:
            log.warning("request_id=%s %s", request_id, reply.headers[HEADER_SERVICE_ERROR])
        elif reply.decision is not None:
            log.debug("request_id=%s reject=%s err_code=%d modified_fields=%s", request_id,
                      reply.decision.is_reject, reply.decision.err_code,
                      sorted(reply.decision.fields))
        # Published, not msg.respond(): nats-py's respond copies the request's headers.
        await self.client.publish(msg.reply, reply.body, headers=reply.headers)

    async def drain(self, grace_s: float = SHUTDOWN_GRACE_S) -> bool:
        """Stops new messages, answers the ones already received and flushes; True when
        everything finished within `grace_s`."""
        async def finish() -> None:
            for subscription in self.subscriptions:
                try:
                    await subscription.drain()
                except Exception as error:  # noqa: BLE001
                    log.warning("cannot drain a subscription: %s", error)
            while self.in_flight:
                await asyncio.gather(*list(self.in_flight), return_exceptions=True)
            await self.client.flush()
        try:
            await asyncio.wait_for(finish(), grace_s)
            return True
        except asyncio.TimeoutError:
            log.warning("shutdown grace elapsed; abandoning %d unfinished replies",
                        len(self.in_flight))
            return False


def _announce_ready(subjects: list) -> None:
    print(f"worker ready on {', '.join(subjects)} (queue {QUEUE_GROUP})", flush=True)


async def serve(settings: Settings, handlers: Mapping[str, Handler], name: str,
                parsers: Optional[Mapping[str, Callable[[Any], Any]]] = None) -> int:
    """Connects (retrying until a server answers), subscribes, announces readiness, answers
    until SIGTERM/SIGINT, then drains. Returns the exit code."""
    import nats  # imported here so that the rest of the module needs no package

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    async def on_error(error: Exception) -> None:
        log.warning("nats: %s", error or type(error).__name__)

    async def on_disconnected() -> None:
        log.warning("disconnected from NATS: callbacks get the gateway's default until "
                    "reconnected")

    async def on_reconnected() -> None:
        log.info("reconnected to NATS")

    closed = asyncio.Event()

    async def on_closed() -> None:
        closed.set()

    # With max_reconnect_attempts=-1, nats-py keeps trying the servers until one answers,
    # also on the first connect; a signal meanwhile ends the attempt.
    connecting = asyncio.ensure_future(nats.connect(
        settings.nats_servers, name=name, ping_interval=PING_INTERVAL_S,
        max_reconnect_attempts=-1, allow_reconnect=True, connect_timeout=2,
        error_cb=on_error, disconnected_cb=on_disconnected, reconnected_cb=on_reconnected,
        closed_cb=on_closed))
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait({connecting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if not connecting.done():
        connecting.cancel()
        log.info("shut down before the worker was ready")
        return EXIT_OK
    try:
        client = connecting.result()
    except Exception as error:  # noqa: BLE001
        log.error("cannot connect to NATS: %s", error)
        return EXIT_CANNOT_RUN

    worker = Worker(client, settings, handlers, parsers)
    try:
        await worker.subscribe()
    except Exception as error:  # noqa: BLE001
        log.error("cannot subscribe: %s", error)
        await client.close()
        return EXIT_CANNOT_RUN
    _announce_ready([worker.subject(command) for command in handlers])

    closing = asyncio.ensure_future(closed.wait())
    await asyncio.wait({stopping, closing}, return_when=asyncio.FIRST_COMPLETED)
    if not stopping.done():
        log.error("the connection closed without a shutdown")
        return EXIT_CANNOT_RUN
    closing.cancel()
    log.info("shutting down: draining the subscriptions")
    if await worker.drain():
        log.info("drained, all replies flushed")
    await client.close()
    return EXIT_OK


def configure_logging(level: int) -> None:
    """Logs go to stderr; stdout carries only the readiness line."""
    logging.basicConfig(stream=sys.stderr, level=level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("nats").setLevel(max(level, logging.WARNING))


def run(handlers: Mapping[str, Handler], *, name: str = "openim-worker-py",
        parsers: Optional[Mapping[str, Callable[[Any], Any]]] = None,
        env: Optional[Mapping[str, str]] = None) -> int:
    """Reads the settings, runs the worker until SIGTERM/SIGINT and returns the exit code:
    0 after a signal, 1 when it cannot run, 2 for a bad setting (one line on stderr)."""
    try:
        settings = Settings.from_env(env)
    except SettingsError as error:
        print(error, file=sys.stderr)
        return EXIT_BAD_SETTINGS
    configure_logging(settings.log_level)
    log.info("connecting to NATS (%d server(s)), concurrency %d", len(settings.nats_servers),
             settings.concurrency)
    return asyncio.run(serve(settings, handlers, name, parsers))
