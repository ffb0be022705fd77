"""Connecting to NATS, retrying until a server answers."""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from typing import Any, Callable, Dict, Tuple

from .protocol import EXIT_CANNOT_RUN, EXIT_OK
from .settings import (PING_INTERVAL_S, WORKER_NATS_NKEY, WORKER_NATS_TLS_CA,
                       WORKER_NATS_TLS_CERT, NatsSecurity, Settings, redact_nats_urls)

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


class SecurityError(Exception):
    """A WORKER_NATS_* file that exists but cannot be used (not a seed, not PEM). The message
    names the variable and the path, never what the file holds."""


def _nkey_seed_ok(path: str) -> bool:
    """Whether the file holds a user nkey seed, checked with the nkeys package that nats-py
    signs with (imported here: only a worker with an nkey needs it)."""
    import nkeys

    with open(path, "rb") as file:
        seed = bytearray(file.read().strip())
    try:
        if not seed.startswith(b"SU"):
            return False
        nkeys.from_seed(seed).wipe()
        return True
    except Exception:  # noqa: BLE001 - whatever the cause, the file is not a seed
        return False
    finally:
        seed[:] = b"\0" * len(seed)


def security_options(security: NatsSecurity) -> Dict[str, Any]:
    """The keyword arguments of nats-py's `connect` for `security`: `user_credentials`,
    `nkeys_seed` and `tls` (an SSLContext trusting the CA, with the client certificate).
    Raises SecurityError for a file that cannot be used."""
    options: Dict[str, Any] = {}
    if security.creds_file:
        options["user_credentials"] = security.creds_file
    if security.nkey_file:
        try:
            usable = _nkey_seed_ok(security.nkey_file)
        except OSError as error:
            raise SecurityError(f"cannot use the nkey file {WORKER_NATS_NKEY}="
                                f"{security.nkey_file!r}: {error.strerror or error}") from None
        if not usable:
            raise SecurityError(f"cannot use the nkey file {WORKER_NATS_NKEY}="
                                f"{security.nkey_file!r}: it does not hold a user nkey seed "
                                "(SU...)")
        options["nkeys_seed"] = security.nkey_file
    if security.tls:
        try:
            context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH,
                                                 cafile=security.tls_ca or None)
        except (OSError, ssl.SSLError) as error:
            raise SecurityError(f"cannot use the CA file {WORKER_NATS_TLS_CA}="
                                f"{security.tls_ca!r}: {error}") from None
        if security.tls_cert:
            try:
                context.load_cert_chain(security.tls_cert, security.tls_key)
            except (OSError, ssl.SSLError) as error:
                raise SecurityError(f"cannot use the client certificate "
                                    f"{WORKER_NATS_TLS_CERT}={security.tls_cert!r} and its "
                                    f"key: {error}") from None
        options["tls"] = context
    return options


async def connect(settings: Settings, name: str, stopping: "asyncio.Future[Any]",
                  while_disconnected: str = "callbacks get the gateway's default") -> Any:
    """Connects, retrying until a server answers. Returns (client, closed event), or the exit
    code when a signal (`stopping` done) came first or the connection failed for good."""
    import nats.aio.client  # imported here so that the rest of the kit needs no package

    try:
        security = security_options(settings.security)
    except SecurityError as error:
        log.error("%s", error)
        return EXIT_CANNOT_RUN
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
        closed_cb=on_closed, **security))
    await asyncio.wait({connecting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if not connecting.done():
        connecting.cancel()
        log.info("shut down before the worker was ready")
        return EXIT_OK
    try:
        connecting.result()
    except Exception as error:  # noqa: BLE001
        log.error("cannot connect to NATS: %s", error)
        return EXIT_CANNOT_RUN
    if settings.security.tls and not (client._server_info or {}).get("tls_required"):
        # nats-py upgrades to TLS only when the server asks for it; TLS settings mean the
        # connection must not go on in plain text.
        log.error("cannot connect to NATS: %s is set but the server does not use TLS",
                  WORKER_NATS_TLS_CA if settings.security.tls_ca else WORKER_NATS_TLS_CERT)
        await client.close()
        return EXIT_CANNOT_RUN
    return client, closed
