"""After-callbacks from the gateway's JetStream stream, through a durable consumer."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import unicodedata
from typing import Any, Awaitable, Callable, Dict, Mapping, Optional

from .connect import connect
from .protocol import DEFAULT_SUBJECT_PREFIX, EXIT_BAD_SETTINGS, EXIT_CANNOT_RUN, EXIT_OK, \
    HEADER_REQUEST_ID
from .request import BadRequest, parse_json
from .service import _startup
from .settings import (DEFAULT_CONCURRENCY, MAX_CONCURRENCY, SHUTDOWN_GRACE_S, WHITESPACE_CHARS,
                       Settings, SettingsError, is_valid_subject)
from .shutdown import stop_on_signals

log = logging.getLogger("openim_gateway_worker")
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
    stop = stop_on_signals()
    stopping = asyncio.ensure_future(stop.wait())
    connected = await connect(settings, name, stopping,
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


def run_after_stream(stream: str, durable: str, handler: AfterHandler,
                     commands: Optional[Any] = None, *, name: str = "openim-after-worker-py",
                     env: Optional[Mapping[str, str]] = None,
                     settings: Optional[Settings] = None, **options: Any) -> int:
    """`consume_after_stream` as a program: reads the settings (NATS_URL,
    WORKER_SUBJECT_PREFIX, WORKER_CONCURRENCY, WORKER_LOG_LEVEL), prints `worker ready on
    stream ...` once the consumer exists, stops cleanly on SIGTERM/SIGINT. Returns the exit
    code: 0 after a signal, 1 when it cannot run, 2 for bad settings (one line each on stderr,
    prefixed by `name`). Pass `settings` when the program read them itself."""
    settings = _startup(env, name, settings)
    if settings is None:
        return EXIT_BAD_SETTINGS
    return asyncio.run(serve_after_stream(settings, stream, durable, handler, commands, name,
                                          **options))
