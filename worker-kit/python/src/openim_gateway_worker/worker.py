"""The subscriptions and in-flight messages of one connection."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable, Mapping, Optional

from .deadline import deadline_unix_ms, is_past, now_unix_ms
from .handler import Handler, respond
from .protocol import (HEADER_REQUEST_ID, HEADER_SERVICE_ERROR, HEADER_SERVICE_ERROR_CODE,
                       QUEUE_GROUP)
from .request import REQUEST_TYPES, json_object
from .settings import SHUTDOWN_GRACE_S, Settings
from .trace import request_span

log = logging.getLogger("openim_gateway_worker")


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
        self.parsers = {command: (parsers or {}).get(command)
                        or REQUEST_TYPES.get(command, json_object)
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
        with request_span(headers, command, msg.subject) as span:
            reply = await respond(self.handlers[command], self.parsers[command], msg.data,
                                  command)
            if span is not None and reply.headers:
                span.set_attribute("openim_worker.service_error_code",
                                   int(reply.headers[HEADER_SERVICE_ERROR_CODE]))
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


def announce_ready(subjects: list) -> None:
    print(f"worker ready on {', '.join(subjects)} (queue {QUEUE_GROUP})", flush=True)
