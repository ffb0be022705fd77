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

For after-callbacks stored by the gateway in a JetStream stream (GATEWAY_AFTER_STREAM),
`consume_after_stream()` / `run_after_stream()` read them through a durable consumer: the
handler gets the command, the parsed body and the headers; the message is acknowledged once
it returns and delivered again when it raises::

    def on_change(command, body, headers):
        print(body["groupID"], body["userID"])

    raise SystemExit(ow.run_after_stream("OPENIM_AFTER", "member-info-log", on_change,
                                         ["callbackAfterSetGroupMemberInfoCommand"]))

Only `run()`, `serve()` and the after-stream consumer need the nats-py package; everything
else is plain Python and is tested without a server.
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


def redact_nats_urls(value: str) -> str:
    """`value` with the user information of each URL hidden, as the gateway hides it:
    everything between the scheme and the last `@` (a password may hold an unencoded `/`,
    `?`, `#` or `,`), the user name kept when it is plainly one."""
    entries = value.split(",")
    shown = []
    index = 0
    while index < len(entries):
        # Entries without a scheme after a comma belong to the password before them when one
        # of them holds an `@`.
        following = []
        for entry in entries[index + 1:]:
            if "://" in entry:
                break
            following.append(entry)
        continuation = max((i + 1 for i, entry in enumerate(following) if "@" in entry),
                           default=0)
        url = ",".join(entries[index:index + continuation + 1])
        start = url.index("://") + 3 if "://" in url else 0
        at = url.rfind("@", start)
        if at >= 0:
            user, colon, _password = url[start:at].partition(":")
            userinfo = f"{user}:***" if colon and not any(c in user for c in "/?#") else "***"
            url = url[:start] + userinfo + url[at:]
        shown.append(url)
        index += continuation + 1
    return ",".join(shown)


def parse_nats_urls(value: str) -> list:
    """`nats://h:p`, `tls://`, `ws://`, `wss://` or a bare `host:port`; one or a comma list.
    An error shows the value with its passwords and tokens hidden."""
    rule = "must be a NATS URL such as nats://127.0.0.1:4222, or a comma-separated list of them"
    shown = redact_nats_urls(value)
    servers = []
    for entry in value.split(","):
        entry = entry.strip()
        url = entry if "://" in entry else f"nats://{entry}"
        try:
            parts = urllib.parse.urlsplit(url)
            parts.port  # raises ValueError for a port that is not a number in range
        except ValueError:
            raise SettingsError(NATS_URL, shown, rule) from None
        if not entry or parts.scheme not in NATS_SCHEMES or not parts.hostname:
            raise SettingsError(NATS_URL, shown, rule)
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            # Most likely a password with an unencoded / ? or # that moved the host.
            raise SettingsError(NATS_URL, shown, "must not have a path, query or fragment: a / ?"
                                " # or @ in a password or token must be percent-encoded"
                                " (%2F %3F %23 %40)")
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


async def _connect(settings: Settings, name: str, stopping: "asyncio.Future[Any]",
                   while_disconnected: str = "callbacks get the gateway's default") -> Any:
    """Connects, retrying until a server answers. Returns (client, closed event), or the exit
    code when a signal (`stopping` done) came first or the connection failed for good."""
    import nats  # imported here so that the rest of the module needs no package

    async def on_error(error: Exception) -> None:
        log.warning("nats: %s", error or type(error).__name__)

    async def on_disconnected() -> None:
        if stopping.done():
            # The client's own close at shutdown: nothing is lost, nothing to warn about.
            return
        log.warning("disconnected from NATS: %s until reconnected", while_disconnected)

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
    await asyncio.wait({connecting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if not connecting.done():
        connecting.cancel()
        log.info("shut down before the worker was ready")
        return EXIT_OK
    try:
        return connecting.result(), closed
    except Exception as error:  # noqa: BLE001
        log.error("cannot connect to NATS: %s", error)
        return EXIT_CANNOT_RUN


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def serve(settings: Settings, handlers: Mapping[str, Handler], name: str,
                parsers: Optional[Mapping[str, Callable[[Any], Any]]] = None) -> int:
    """Connects (retrying until a server answers), subscribes, announces readiness, answers
    until SIGTERM/SIGINT, then drains. Returns the exit code."""
    stop = _stop_on_signals()
    stopping = asyncio.ensure_future(stop.wait())
    connected = await _connect(settings, name, stopping)
    if isinstance(connected, int):
        return connected
    client, closed = connected

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


# --- After-callbacks from a JetStream stream --------------------------------------------------
#
# With GATEWAY_AFTER_STREAM=<name> the gateway stores every after-callback in that stream
# before acknowledging OpenIM. A durable consumer remembers, on the server, what this worker
# has acknowledged, so a worker that was down reads what it missed when it comes back.

HEADER_CALLBACK_COMMAND = "X-Callback-Command"

# How long the server waits for an acknowledgement before delivering a message again. While
# a handler runs, the library tells the server it is still working every half of this.
DEFAULT_ACK_WAIT_S = 30.0
# After a handler raised, the message comes back after this delay.
DEFAULT_NAK_DELAY_S = 1.0
# How long one pull request waits for messages; also the longest a stop waits for it.
DEFAULT_FETCH_WAIT_S = 1.0
# How long an acknowledgement waits for the server to confirm it.
ACK_TIMEOUT_S = 5.0

AfterHandler = Callable[[str, Any, Dict[str, str]], Optional[Awaitable[None]]]


def is_valid_name(name: str) -> bool:
    """A stream or consumer name: not empty, no whitespace, control characters, `.`, `*`,
    `>`, `/` or `\\`."""
    return isinstance(name, str) and bool(name) and all(
        c not in WHITESPACE_CHARS and unicodedata.category(c) != "Cc" and c not in ".*>/\\"
        for c in name)


def parse_name_setting(env: Mapping[str, str], variable: str, default: str) -> str:
    """A stream or consumer name from the environment (see `is_valid_name`)."""
    value = env.get(variable, default)
    if not is_valid_name(value):
        raise SettingsError(variable, value, "must be a stream or consumer name: not empty, "
                                             "no whitespace, '.', '*', '>', '/' or '\\'")
    return value


def after_subjects(subject_prefix: str, commands: Optional[Any]) -> list:
    """The filter subjects for these commands; empty for all (the whole stream)."""
    if commands is None:
        return []
    if isinstance(commands, str):
        commands = [commands]
    subjects = [f"{subject_prefix}.{command}" for command in commands]
    if not subjects or not all(is_valid_subject(subject) for subject in subjects):
        raise ValueError(f"commands must be command names, not {list(commands)!r}")
    return subjects


def after_command(subject: str, headers: Mapping[str, str], subject_prefix: str) -> str:
    """The command: the X-Callback-Command header, else the subject's last part."""
    command = headers.get(HEADER_CALLBACK_COMMAND)
    if command:
        return command
    prefix = subject_prefix + "."
    return subject[len(prefix):] if subject.startswith(prefix) else subject.rsplit(".", 1)[-1]


@dataclasses.dataclass
class AfterStreamStats:
    """What a consumer did with its messages (a message delivered twice counts twice)."""

    acked: int = 0       # the handler returned and the server confirmed the ack
    retried: int = 0     # the handler raised: negatively acknowledged, delivered again later
    refused: int = 0     # BadRequest from the parser or the handler: terminated for good
    unconfirmed: int = 0  # handled, but the ack was not confirmed: may be delivered again
    abandoned: int = 0   # still running when the stop's grace elapsed: delivered again later


class AfterStreamConsumer:
    """A durable pull consumer on the gateway's after-callback stream. `client` is a
    connected nats-py client. See `consume_after_stream`."""

    def __init__(self, client: Any, stream: str, durable: str, handler: AfterHandler,
                 commands: Optional[Any] = None, *,
                 subject_prefix: str = DEFAULT_SUBJECT_PREFIX,
                 concurrency: int = DEFAULT_CONCURRENCY,
                 parse: Callable[[bytes], Any] = parse_json,
                 ack_wait_s: float = DEFAULT_ACK_WAIT_S,
                 nak_delay_s: float = DEFAULT_NAK_DELAY_S,
                 fetch_wait_s: float = DEFAULT_FETCH_WAIT_S,
                 max_deliver: Optional[int] = None,
                 grace_s: float = SHUTDOWN_GRACE_S) -> None:
        for what, name in (("stream", stream), ("durable", durable)):
            if not is_valid_name(name):
                raise ValueError(f"{what} {name!r} is not a valid name (no whitespace, "
                                 f"'.', '*', '>', '/' or '\\')")
        if not 1 <= concurrency <= MAX_CONCURRENCY:
            raise ValueError(f"concurrency must be in 1..={MAX_CONCURRENCY}")
        self.client = client
        self.stream = stream
        self.durable = durable
        self.handler = handler
        self.subject_prefix = subject_prefix
        self.subjects = after_subjects(subject_prefix, commands)
        self.concurrency = concurrency
        self.parse = parse
        self.ack_wait_s = ack_wait_s
        self.nak_delay_s = nak_delay_s
        self.fetch_wait_s = fetch_wait_s
        self.max_deliver = max_deliver
        self.grace_s = grace_s
        self.stats = AfterStreamStats()
        self.free = concurrency
        self.freed = asyncio.Event()
        self.in_flight: set = set()
        self.subscription: Any = None

    def consumer_config(self) -> Any:
        from nats.js import api

        config = api.ConsumerConfig(
            durable_name=self.durable, ack_policy=api.AckPolicy.EXPLICIT,
            deliver_policy=api.DeliverPolicy.ALL, ack_wait=self.ack_wait_s)
        if len(self.subjects) == 1:
            config.filter_subject = self.subjects[0]
        elif self.subjects:
            config.filter_subjects = list(self.subjects)
        if self.max_deliver is not None:
            config.max_deliver = self.max_deliver
        return config

    async def open(self) -> None:
        """Creates the durable consumer, or updates it to this configuration, and binds to
        it. Raises when the stream does not exist or a subject is not in it."""
        js = self.client.jetstream()
        await js.add_consumer(self.stream, self.consumer_config())
        self.subscription = await js.pull_subscribe_bind(durable=self.durable,
                                                         stream=self.stream)

    async def consume(self, stop: asyncio.Event) -> AfterStreamStats:
        """Pulls and handles messages until `stop` is set, then lets the running handlers
        finish (up to `grace_s`), acknowledges them and returns the counts."""
        from nats.errors import TimeoutError as NatsTimeout

        if self.subscription is None:
            await self.open()
        while not stop.is_set():
            if self.free == 0:
                self.freed.clear()
                await _first_of(self.freed.wait(), stop.wait())
                continue
            # Ask for exactly as many messages as there are free handlers: nothing waits in
            # the client while its ack timer runs.
            batch, self.free = self.free, 0
            messages: list = []
            try:
                messages = await self.subscription.fetch(batch, timeout=self.fetch_wait_s)
            except (NatsTimeout, asyncio.TimeoutError):
                pass
            except Exception as error:  # noqa: BLE001 - e.g. disconnected: try again
                log.warning("cannot pull from stream %s as %s: %s", self.stream, self.durable,
                            error or type(error).__name__)
                await _first_of(asyncio.sleep(1.0), stop.wait())
            self.free += batch - len(messages)
            for msg in messages:
                task = asyncio.get_running_loop().create_task(self._handle(msg))
                self.in_flight.add(task)
                task.add_done_callback(self.in_flight.discard)
        await self._drain()
        return self.stats

    async def _drain(self) -> None:
        if self.in_flight:
            log.info("stopping: waiting for %d running handler(s)", len(self.in_flight))
            _, pending = await asyncio.wait(set(self.in_flight), timeout=self.grace_s)
            if pending:
                log.warning("shutdown grace elapsed; %d message(s) not acknowledged will be "
                            "delivered again", len(pending))
                self.stats.abandoned += len(pending)
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
        try:
            await self.client.flush()
            await self.subscription.unsubscribe()
        except Exception as error:  # noqa: BLE001
            log.warning("cannot close the pull subscription: %s", error)

    async def _handle(self, msg: Any) -> None:
        headers = dict(getattr(msg, "headers", None) or {})
        request_id = headers.get(HEADER_REQUEST_ID, "-")
        try:
            command = after_command(msg.subject, headers, self.subject_prefix)
            try:
                body = self.parse(msg.data)
            except BadRequest as error:
                log.warning("request_id=%s %s: terminated, it will not be delivered again",
                            request_id, error)
                await msg.term()
                self.stats.refused += 1
                return
            keep_alive = asyncio.get_running_loop().create_task(self._keep_alive(msg))
            try:
                outcome = self.handler(command, body, headers)
                if asyncio.iscoroutine(outcome) or isinstance(outcome, asyncio.Future):
                    await outcome
            except BadRequest as error:
                log.warning("request_id=%s the handler refused the body (%s): terminated, it "
                            "will not be delivered again", request_id, error)
                await msg.term()
                self.stats.refused += 1
                return
            except Exception:  # noqa: BLE001 - the message comes back later
                log.error("request_id=%s the handler failed for %s; delivered again in %ss",
                          request_id, command, self.nak_delay_s, exc_info=True)
                await msg.nak(delay=self.nak_delay_s)
                self.stats.retried += 1
                return
            finally:
                keep_alive.cancel()
            try:
                await msg.ack_sync(timeout=ACK_TIMEOUT_S)
                self.stats.acked += 1
            except Exception as error:  # noqa: BLE001
                log.warning("request_id=%s the ack was not confirmed (%s): the message may be "
                            "delivered again", request_id, error or type(error).__name__)
                self.stats.unconfirmed += 1
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - one message never stops the consumer
            log.exception("request_id=%s a message failed", request_id)
        finally:
            self.free += 1
            self.freed.set()

    async def _keep_alive(self, msg: Any) -> None:
        """While the handler runs, tells the server it is still being worked on."""
        while True:
            await asyncio.sleep(self.ack_wait_s / 2)
            try:
                await msg.in_progress()
            except Exception:  # noqa: BLE001
                return


async def _first_of(*awaitables: Awaitable[Any]) -> None:
    """Waits until one of them is done and cancels the others."""
    tasks = [asyncio.ensure_future(item) for item in awaitables]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()


async def consume_after_stream(client: Any, stream: str, durable: str, handler: AfterHandler,
                               commands: Optional[Any] = None, *,
                               stop: Optional[asyncio.Event] = None,
                               ready: Optional[asyncio.Event] = None,
                               **options: Any) -> AfterStreamStats:
    """Handles the after-callbacks stored in the gateway's stream `stream` through the
    durable consumer `durable`, until `stop` is set (never, when None).

    - `handler(command, body, headers)` (may be async): `command` from `X-Callback-Command`,
      `body` the parsed JSON (or what `parse=` returns for the raw bytes), `headers` a dict.
    - The message is acknowledged once the handler returns (the server confirms the ack);
      when it raises, it is negatively acknowledged and delivered again after
      `nak_delay_s`; when `parse` or the handler raises `BadRequest`, the message is
      terminated (never delivered again).
    - `commands`: a command name or a list of them, to read only those; all by default.
    - At most `concurrency` handlers run at a time, and no more messages are pulled than
      there are free handlers. Order is the stream's, except for messages delivered again.
    - Created when missing, the consumer starts at the oldest message the stream holds; an
      existing one continues after what it acknowledged. Several workers may share it.
    - `ready` is set once the consumer exists. On `stop`, no more messages are pulled, the
      running handlers get `grace_s` to finish and are acknowledged, then it returns.

    Other options: `subject_prefix`, `concurrency`, `parse`, `ack_wait_s`, `nak_delay_s`,
    `fetch_wait_s`, `max_deliver`, `grace_s` (see `AfterStreamConsumer`)."""
    consumer = AfterStreamConsumer(client, stream, durable, handler, commands, **options)
    await consumer.open()
    if ready is not None:
        ready.set()
    return await consumer.consume(stop or asyncio.Event())


async def serve_after_stream(settings: Settings, stream: str, durable: str,
                             handler: AfterHandler, commands: Optional[Any], name: str,
                             **options: Any) -> int:
    """Connects, creates the durable consumer, announces readiness, handles messages until
    SIGTERM/SIGINT, then finishes the running ones. Returns the exit code."""
    stop = _stop_on_signals()
    stopping = asyncio.ensure_future(stop.wait())
    connected = await _connect(settings, name, stopping,
                               "after-callbacks wait in the stream")
    if isinstance(connected, int):
        return connected
    client, closed = connected
    options.setdefault("subject_prefix", settings.subject_prefix)
    options.setdefault("concurrency", settings.concurrency)
    try:
        consumer = AfterStreamConsumer(client, stream, durable, handler, commands, **options)
        await consumer.open()
    except Exception as error:  # noqa: BLE001
        log.error("cannot consume stream %s as %s: %s", stream, durable, error)
        await client.close()
        return EXIT_CANNOT_RUN
    print(f"worker ready on stream {stream} as durable {durable} "
          f"({', '.join(consumer.subjects) or 'all subjects'})", flush=True)

    consuming = asyncio.ensure_future(consumer.consume(stop))
    closing = asyncio.ensure_future(closed.wait())
    await asyncio.wait({consuming, closing}, return_when=asyncio.FIRST_COMPLETED)
    if not consuming.done():
        log.error("the connection closed without a shutdown")
        consuming.cancel()
        return EXIT_CANNOT_RUN
    closing.cancel()
    stats = consuming.result()
    log.info("stopped: %d acknowledged, %d to retry, %d refused, %d unconfirmed, %d abandoned",
             stats.acked, stats.retried, stats.refused, stats.unconfirmed, stats.abandoned)
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
    settings = _startup(env)
    if settings is None:
        return EXIT_BAD_SETTINGS
    return asyncio.run(serve(settings, handlers, name, parsers))


def _startup(env: Optional[Mapping[str, str]]) -> Optional[Settings]:
    """What both programs do first: read the settings (None after printing the one-line
    error of a bad one) and set up logging."""
    try:
        settings = Settings.from_env(env)
    except SettingsError as error:
        print(error, file=sys.stderr)
        return None
    configure_logging(settings.log_level)
    log.info("connecting to NATS (%d server(s)), concurrency %d", len(settings.nats_servers),
             settings.concurrency)
    return settings


def run_after_stream(stream: str, durable: str, handler: AfterHandler,
                     commands: Optional[Any] = None, *, name: str = "openim-after-worker-py",
                     env: Optional[Mapping[str, str]] = None, **options: Any) -> int:
    """`consume_after_stream` as a program: reads the settings (NATS_URL,
    WORKER_SUBJECT_PREFIX, WORKER_CONCURRENCY, WORKER_LOG_LEVEL), prints `worker ready on
    stream ...` once the consumer exists, stops cleanly on SIGTERM/SIGINT. Returns the exit
    code: 0 after a signal, 1 when it cannot run, 2 for a bad setting."""
    settings = _startup(env)
    if settings is None:
        return EXIT_BAD_SETTINGS
    return asyncio.run(serve_after_stream(settings, stream, durable, handler, commands, name,
                                          **options))
