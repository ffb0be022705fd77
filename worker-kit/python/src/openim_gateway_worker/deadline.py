"""The X-Deadline-Unix-Ms header: past it, nobody waits for the answer."""

from __future__ import annotations

import logging
import re
import time
from typing import Mapping, Optional

from .protocol import HEADER_DEADLINE_UNIX_MS

log = logging.getLogger("openim_gateway_worker")


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
