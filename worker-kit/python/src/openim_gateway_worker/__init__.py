"""openim_gateway_worker: the NATS side of an openim-gateway worker, so that a worker is only
its rules.

You write a handler that takes a typed request and returns a decision made with `allow()`,
`reject(code, msg)` or `modify(changes)` (a `models.*Changes` dataclass); `run()` does the rest:

- subscribes to `{WORKER_SUBJECT_PREFIX}.{command}` in the queue group `openim-workers`
  (one subscription per command you pass), on the servers of `NATS_URL`;
- skips a message whose `X-Deadline-Unix-Ms` has passed (the gateway has already answered
  OpenIM with its default, nobody waits for this reply);
- replies to the message's reply subject with the decision as JSON, without copying the
  request's headers onto the reply;
- replies with an empty body and the headers `Nats-Service-Error` / `Nats-Service-Error-Code`
  (400 when the body is not JSON or not the command's request, 500 when the handler raises),
  so that the gateway answers its default at once instead of waiting for its timeout;
- runs at most `WORKER_CONCURRENCY` handlers at a time;
- prints `worker ready on ...` on stdout once the server has confirmed the subscriptions;
- on SIGTERM or SIGINT drains: the server stops sending, messages already received are still
  answered (up to 5 s), the replies are flushed, and `run()` returns 0.

Example::

    import openim_gateway_worker as ow

    def decide(request: ow.SetGroupMemberInfoRequest) -> ow.Decision:
        if request.role_level == 100:
            return ow.reject(5005, "no owner changes here")
        return ow.allow()

    raise SystemExit(ow.run({ow.BEFORE_SET_GROUP_MEMBER_INFO: decide}))

For after-callbacks stored by the gateway in a JetStream stream (GATEWAY_AFTER_STREAM),
`consume_after_stream()` / `run_after_stream()` read them through a durable consumer: the
handler gets the command, the parsed body and the headers; the message is acknowledged once
it returns and delivered again when it raises::

    def on_change(command, body, headers):
        print(body["groupID"], body["userID"])

    raise SystemExit(ow.run_after_stream("OPENIM_AFTER", "member-info-log", on_change,
                                         ["callbackAfterSetGroupMemberInfoCommand"]))

The modules, one concept each: `settings`, `protocol`, `answer`, `request`, `handler`,
`deadline`, `worker`, `connect`, `shutdown`, `service`, `after_stream`, `trace` (a span per
request with OTEL_EXPORTER_OTLP_ENDPOINT and the `[otel]` extra), and the generated
`models` (with `changes`). Everything is also exported here.
"""


from . import answer, models
from .after_stream import (ACK_TIMEOUT_S, DEFAULT_ACK_WAIT_S, DEFAULT_FETCH_WAIT_S,
                           DEFAULT_NAK_DELAY_S, HEADER_CALLBACK_COMMAND, AfterHandler,
                           AfterStreamConsumer, AfterStreamStats, after_command, after_subjects,
                           consume_after_stream, is_valid_name, parse_name_setting,
                           run_after_stream, serve_after_stream)
from .answer import (COMMON_FIELDS, INT32_MAX, INT32_MIN, MIN_REJECT_ERR_CODE, Decision, allow,
                     modify, reject)
from .changes import Changes, ShapeError
from .connect import ERROR_LOG_INTERVAL_S, ErrorThrottle, SecurityError, security_options
from .deadline import deadline_unix_ms, is_past, now_unix_ms
from .handler import Handler, Reply, respond, service_error
from .protocol import (BEFORE_SET_GROUP_MEMBER_INFO, DEFAULT_SUBJECT_PREFIX, EXIT_BAD_SETTINGS,
                       EXIT_CANNOT_RUN, EXIT_OK, HEADER_DEADLINE_UNIX_MS, HEADER_REQUEST_ID,
                       HEADER_SERVICE_ERROR, HEADER_SERVICE_ERROR_CODE, QUEUE_GROUP)
from .request import (REQUEST_TYPES, BadRequest, SetGroupMemberInfoRequest, json_object,
                      parse_json)
from .service import configure_logging, print_problems, run, serve
from .settings import (DEFAULT_CONCURRENCY, DEFAULT_NATS_URL, LOG_LEVELS, MAX_CONCURRENCY,
                       NATS_URL, PING_INTERVAL_S, SHUTDOWN_GRACE_S, VARIABLES, WHITESPACE_CHARS,
                       WORKER_CONCURRENCY, WORKER_LOG_LEVEL, WORKER_NATS_CREDS,
                       WORKER_NATS_NKEY, WORKER_NATS_TLS_CA, WORKER_NATS_TLS_CERT,
                       WORKER_NATS_TLS_KEY, WORKER_SUBJECT_PREFIX, NatsSecurity, Settings,
                       SettingsError, file_setting, gather, is_valid_subject, misspelled,
                       normalise_whitespace, parse_int_setting, parse_nats_urls,
                       redact_nats_urls)
from .trace import current_traceparent
from .worker import Worker

__version__ = "1.0.0"

__all__ = ["ACK_TIMEOUT_S", "AfterHandler", "AfterStreamConsumer", "AfterStreamStats",
           "BEFORE_SET_GROUP_MEMBER_INFO", "BadRequest", "COMMON_FIELDS", "Changes",
           "DEFAULT_ACK_WAIT_S", "DEFAULT_CONCURRENCY", "DEFAULT_FETCH_WAIT_S",
           "DEFAULT_NAK_DELAY_S", "DEFAULT_NATS_URL", "DEFAULT_SUBJECT_PREFIX", "Decision",
           "ERROR_LOG_INTERVAL_S", "EXIT_BAD_SETTINGS", "EXIT_CANNOT_RUN", "EXIT_OK",
           "ErrorThrottle", "HEADER_CALLBACK_COMMAND", "HEADER_DEADLINE_UNIX_MS",
           "HEADER_REQUEST_ID", "HEADER_SERVICE_ERROR", "HEADER_SERVICE_ERROR_CODE", "Handler",
           "INT32_MAX", "INT32_MIN", "LOG_LEVELS", "MAX_CONCURRENCY", "MIN_REJECT_ERR_CODE",
           "NATS_URL", "NatsSecurity", "PING_INTERVAL_S", "QUEUE_GROUP", "REQUEST_TYPES", "Reply",
           "SHUTDOWN_GRACE_S", "SetGroupMemberInfoRequest", "Settings", "SettingsError",
           "SecurityError", "ShapeError", "VARIABLES", "WHITESPACE_CHARS", "WORKER_CONCURRENCY",
           "WORKER_LOG_LEVEL", "WORKER_NATS_CREDS", "WORKER_NATS_NKEY", "WORKER_NATS_TLS_CA",
           "WORKER_NATS_TLS_CERT", "WORKER_NATS_TLS_KEY", "WORKER_SUBJECT_PREFIX", "Worker", "after_command",
           "after_subjects", "allow", "answer", "configure_logging", "consume_after_stream",
           "current_traceparent",
           "deadline_unix_ms", "file_setting", "gather", "is_past", "is_valid_name", "is_valid_subject",
           "json_object", "misspelled", "models", "modify", "normalise_whitespace",
           "now_unix_ms", "parse_int_setting", "parse_json", "parse_name_setting",
           "parse_nats_urls", "print_problems", "redact_nats_urls", "reject", "respond", "run",
           "run_after_stream", "security_options", "serve", "serve_after_stream", "service_error", "__version__"]
