"use strict";

// The names the worker shares with the gateway (subjects, queue group, headers) and the exit
// codes of the programs.

// --- Names shared with the gateway -----------------------------------------------------------

const DEFAULT_SUBJECT_PREFIX = "openim.callback";
const QUEUE_GROUP = "openim-workers";
const BEFORE_SET_GROUP_MEMBER_INFO = "callbackBeforeSetGroupMemberInfoCommand";

const HEADER_REQUEST_ID = "X-Request-Id";
const HEADER_DEADLINE_UNIX_MS = "X-Deadline-Unix-Ms";
const HEADER_SERVICE_ERROR = "Nats-Service-Error";
const HEADER_SERVICE_ERROR_CODE = "Nats-Service-Error-Code";

// How often the client pings the server, so that a half-open connection is noticed quickly.
const PING_INTERVAL_MS = 5000;
// How long shutdown waits for in-flight replies and the final flush.
const SHUTDOWN_GRACE_MS = 5000;

const EXIT_OK = 0;
const EXIT_CANNOT_RUN = 1;
const EXIT_BAD_SETTINGS = 2;

module.exports = {
  DEFAULT_SUBJECT_PREFIX,
  QUEUE_GROUP,
  BEFORE_SET_GROUP_MEMBER_INFO,
  HEADER_REQUEST_ID,
  HEADER_DEADLINE_UNIX_MS,
  HEADER_SERVICE_ERROR,
  HEADER_SERVICE_ERROR_CODE,
  PING_INTERVAL_MS,
  SHUTDOWN_GRACE_MS,
  EXIT_OK,
  EXIT_CANNOT_RUN,
  EXIT_BAD_SETTINGS,
};
