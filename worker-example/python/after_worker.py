"""An after-callback worker: logs every group member change OpenIM reports.

OpenIM sends callbackAfterSetGroupMemberInfoCommand once a member's nickname, avatar, role or
`ex` has changed. With GATEWAY_AFTER_STREAM set, the gateway stores these notifications in a
JetStream stream; this worker reads them through a durable consumer, so the changes made
while it was stopped are logged when it starts again, each one once.

Run: `python after_worker.py` (env NATS_URL, WORKER_SUBJECT_PREFIX, WORKER_CONCURRENCY,
WORKER_LOG_LEVEL, and WORKER_AFTER_STREAM: the gateway's GATEWAY_AFTER_STREAM, default
OPENIM_AFTER; WORKER_AFTER_DURABLE: this worker's consumer, default member-info-log).
"""

from __future__ import annotations

import logging
import os
from typing import Any, Dict, Mapping, Optional

import openim_gateway_worker as ow

AFTER_SET_GROUP_MEMBER_INFO = "callbackAfterSetGroupMemberInfoCommand"
WORKER_AFTER_STREAM = "WORKER_AFTER_STREAM"
WORKER_AFTER_DURABLE = "WORKER_AFTER_DURABLE"
DEFAULT_STREAM = "OPENIM_AFTER"
DEFAULT_DURABLE = "member-info-log"
CHANGE_FIELDS = ("nickName", "faceURL", "roleLevel", "ex")

log = logging.getLogger("after_worker")


def describe(body: Dict[str, Any]) -> str:
    """One line for a change: the group, the member and the fields OpenIM reports (a null
    field did not change)."""
    changes = " ".join(f"{name}={body[name]!r}" for name in CHANGE_FIELDS
                       if body.get(name) is not None)
    return (f"group={body.get('groupID')!r} user={body.get('userID')!r} "
            f"{changes or '(no field reported)'}")


def on_member_info_changed(command: str, body: Any, headers: Dict[str, str]) -> None:
    if not isinstance(body, dict):
        raise ow.BadRequest("body is not a JSON object")
    log.info("member info changed: %s request_id=%s", describe(body),
             headers.get(ow.HEADER_REQUEST_ID, "-"))


PROGRAM = "openim-after-worker-example-python"
VARIABLES = ow.VARIABLES + (WORKER_AFTER_STREAM, WORKER_AFTER_DURABLE)


def main(env: Optional[Mapping[str, str]] = None) -> int:
    env = os.environ if env is None else env
    problems = ow.misspelled(env, VARIABLES)
    try:
        settings, stream, durable = ow.gather(
            lambda: ow.Settings.from_env(env),
            lambda: ow.parse_name_setting(env, WORKER_AFTER_STREAM, DEFAULT_STREAM),
            lambda: ow.parse_name_setting(env, WORKER_AFTER_DURABLE, DEFAULT_DURABLE))
    except ow.SettingsError as error:
        problems.extend(error.problems)
    if problems:
        ow.print_problems(PROGRAM, ow.SettingsError(problems=problems))
        return ow.EXIT_BAD_SETTINGS
    return ow.run_after_stream(stream, durable, on_member_info_changed,
                               [AFTER_SET_GROUP_MEMBER_INFO], name=PROGRAM, settings=settings)


if __name__ == "__main__":
    raise SystemExit(main())
