"""Names shared with the gateway: subjects, the queue group, headers, exit codes."""

from __future__ import annotations

DEFAULT_SUBJECT_PREFIX = "openim.callback"
QUEUE_GROUP = "openim-workers"
BEFORE_SET_GROUP_MEMBER_INFO = "callbackBeforeSetGroupMemberInfoCommand"

HEADER_REQUEST_ID = "X-Request-Id"
HEADER_DEADLINE_UNIX_MS = "X-Deadline-Unix-Ms"
HEADER_SERVICE_ERROR = "Nats-Service-Error"
HEADER_SERVICE_ERROR_CODE = "Nats-Service-Error-Code"

EXIT_OK = 0
EXIT_CANNOT_RUN = 1
EXIT_BAD_SETTINGS = 2
