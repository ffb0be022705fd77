"""Connecting to NATS, retrying until a server answers."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Callable, Dict, Tuple

from .protocol import EXIT_CANNOT_RUN, EXIT_OK
from .settings import PING_INTERVAL_S, Settings, redact_nats_urls

log = logging.getLogger("openim_gateway_worker")

# A connection error is logged once per server and cause in this many seconds: a server that
# stays down must not fill the log with one line per reconnect attempt.
ERROR_LOG_INTERVAL_S = 30.0


class ErrorThrottle:
    """Logs a NATS connection error once per (server, cause) every `interval_s` seconds,
    naming the server (its password or token hidden) and counting the repeats it held back."""

    def __init__(self, interval_s: float = ERROR_LOG_INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_s = interval_s
        self.clock = clock
        self.last: Dict[Tuple[str, str], Tuple[float, int]] = {}

    def report(self, server: str, error: BaseException) -> bool:
        """True when this call logged a line."""
        cause = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
        key = (server, cause)
        now = self.clock()
        seen = self.last.get(key)
        if seen is not None and now - seen[0] < self.interval_s:
            self.last[key] = (seen[0], seen[1] + 1)
            return False
        repeats = f" (and {seen[1]} more time(s) in the last {self.interval_s:.0f} s)" \
            if seen and seen[1] else ""
        log.warning("NATS server %s: %s%s", server, cause, repeats)
        self.last[key] = (now, 0)
        return True


def current_server(client: Any, settings: Settings) -> str:
    """The server an error is about, for a log line, its credentials hidden: the connected
    one, or while connecting the one just tried (nats-py puts it at the end of its pool)."""
    server = None
    if getattr(client, "is_connected", False):
        server = getattr(client, "_current_server", None)
    else:
        pool = getattr(client, "_server_pool", None)
        if pool:
            server = pool[-1]
    uri = getattr(server, "uri", None)
    if uri is not None and hasattr(uri, "geturl"):
        return redact_nats_urls(uri.geturl())
    return redact_nats_urls(",".join(settings.nats_servers))


async def connect(settings: Settings, name: str, stopping: "asyncio.Future[Any]",
                  while_disconnected: str = "callbacks get the gateway's default") -> Any:
    """Connects, retrying until a server answers. Returns (client, closed event), or the exit
    code when a signal (`stopping` done) came first or the connection failed for good."""
    import nats.aio.client  # imported here so that the rest of the kit needs no package

    client = nats.aio.client.Client()
    errors = ErrorThrottle()

    async def on_error(error: Exception) -> None:
        errors.report(current_server(client, settings), error)

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
    connecting = asyncio.ensure_future(client.connect(
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
        connecting.result()
        return client, closed
    except Exception as error:  # noqa: BLE001
        log.error("cannot connect to NATS: %s", error)
        return EXIT_CANNOT_RUN
