"""A worker as a program: settings, logging, connect, subscribe, answer, drain."""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any, Callable, Mapping, Optional

from . import trace
from .connect import connect
from .handler import Handler
from .protocol import EXIT_BAD_SETTINGS, EXIT_CANNOT_RUN, EXIT_OK
from .settings import Settings, SettingsError
from .shutdown import stop_on_signals
from .worker import Worker, announce_ready

log = logging.getLogger("openim_gateway_worker")


async def serve(settings: Settings, handlers: Mapping[str, Handler], name: str,
                parsers: Optional[Mapping[str, Callable[[Any], Any]]] = None) -> int:
    """Connects (retrying until a server answers), subscribes, announces readiness, answers
    until SIGTERM/SIGINT, then drains. Returns the exit code."""
    stop = stop_on_signals()
    stopping = asyncio.ensure_future(stop.wait())
    connected = await connect(settings, name, stopping)
    if isinstance(connected, int):
        return connected
    client, closed = connected

    trace.start_exporting(name)
    worker = Worker(client, settings, handlers, parsers)
    try:
        await worker.subscribe()
    except Exception as error:  # noqa: BLE001
        log.error("cannot subscribe: %s", error)
        await client.close()
        return EXIT_CANNOT_RUN
    announce_ready([worker.subject(command) for command in handlers])

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
    await asyncio.get_running_loop().run_in_executor(None, trace.flush)
    return EXIT_OK


def configure_logging(level: int) -> None:
    """Logs go to stderr; stdout carries only the readiness line."""
    logging.basicConfig(stream=sys.stderr, level=level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("nats").setLevel(max(level, logging.WARNING))


def run(handlers: Mapping[str, Handler], *, name: str = "openim-worker-py",
        parsers: Optional[Mapping[str, Callable[[Any], Any]]] = None,
        env: Optional[Mapping[str, str]] = None, settings: Optional[Settings] = None) -> int:
    """Reads the settings (unless given), runs the worker until SIGTERM/SIGINT and returns the
    exit code: 0 after a signal, 1 when it cannot run, 2 for bad settings (one line each on
    stderr, prefixed by `name`)."""
    settings = _startup(env, name, settings)
    if settings is None:
        return EXIT_BAD_SETTINGS
    return asyncio.run(serve(settings, handlers, name, parsers))


def print_problems(name: str, error: SettingsError) -> None:
    """Every problem on its own stderr line, prefixed by the program's name."""
    for line in error.problems:
        print(f"{name}: {line}", file=sys.stderr)


def _startup(env: Optional[Mapping[str, str]], name: str,
             settings: Optional[Settings] = None) -> Optional[Settings]:
    """What both programs do first: read the settings (None after printing every problem)
    and set up logging."""
    if settings is None:
        try:
            settings = Settings.from_env(env)
        except SettingsError as error:
            print_problems(name, error)
            return None
    configure_logging(settings.log_level)
    log.info("connecting to NATS (%d server(s)), concurrency %d", len(settings.nats_servers),
             settings.concurrency)
    return settings
