"""One message without NATS: parse, run the handler, build the reply."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any, Awaitable, Callable, Dict, Optional, Union

from . import models
from .answer import Decision
from .protocol import HEADER_SERVICE_ERROR, HEADER_SERVICE_ERROR_CODE
from .request import BadRequest, parse_json

log = logging.getLogger("openim_gateway_worker")

Handler = Callable[[Any], Union[Decision, Awaitable[Decision]]]


@dataclasses.dataclass(frozen=True)
class Reply:
    """What to publish on the reply subject: a body, and headers only for service errors."""

    body: bytes
    headers: Optional[Dict[str, str]] = None
    decision: Optional[Decision] = None


def service_error(code: str, description: str) -> Reply:
    description = " ".join(description.splitlines())  # a header value cannot hold a line break
    return Reply(b"", {HEADER_SERVICE_ERROR: description, HEADER_SERVICE_ERROR_CODE: code})


def check_changes_type(decision: Decision, command: Optional[str]) -> None:
    """A modification must carry the command's own changes dataclass: another command's
    fields would be dropped by the gateway without a word."""
    if decision.changes_type is None or command not in models.COMMANDS:
        return
    expected = models.COMMANDS[command][1]
    if decision.changes_type is not expected:
        wanted = expected.__name__ if expected is not None else "no changes (allow or reject)"
        raise TypeError(f"{command} takes {wanted}, not {decision.changes_type.__name__}")


async def respond(handler: Handler, parse: Callable[[Any], Any], payload: bytes,
                  command: Optional[str] = None) -> Reply:
    """Parses the body, runs the handler and turns the outcome into the reply; with
    `command`, a modification must use that command's changes dataclass."""
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
        check_changes_type(decision, command)
        return Reply(decision.to_json(), None, decision)
    except Exception as error:  # noqa: BLE001 - any handler failure becomes a service error
        log.error("the handler failed", exc_info=True)
        return service_error("500", f"internal error: the handler failed ({type(error).__name__})")
