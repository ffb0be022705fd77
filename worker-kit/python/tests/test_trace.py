"""Traces: with OTEL_EXPORTER_OTLP_ENDPOINT set for the gateway and for a worker on the
installed kit (with its `[otel]` extra), the worker's span is the child of the gateway's,
which continues the caller's `traceparent`; both decoded by a real OTLP receiver
(tests/otlp/receiver.py of the repository, on OpenTelemetry's own protobuf classes).

Needs what test_example.py needs, and the kit installed with `[otel]`."""

import json
import sys
import tempfile
import time
import unittest

import stack
from test_example import COMMAND, kit

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_SPAN_ID = "00f067aa0ba902b7"
EXPORT_TIMEOUT_S = 20.0


class WorkerSpanIsTheGatewaySpansChild(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        root = stack.repository()
        if root is None:
            raise RuntimeError("set OPENIM_GATEWAY_REPO to the repository's root")
        cls.receiver = stack.Child([sys.executable, str(root / "tests" / "otlp" / "receiver.py")],
                                   stack.clean_env())
        line = cls.receiver.wait_for("otlp receiver listening on")
        if line is None:
            cls.receiver.stop()
            raise RuntimeError("the OTLP receiver did not start (is opentelemetry-proto "
                               "installed, with the [otel] extra?)")
        endpoint = f"http://127.0.0.1:{line.rsplit(' ', 1)[1]}"
        otel = {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_BSP_SCHEDULE_DELAY": "100"}
        cls.stack = stack.Stack(gateway_env=otel | {"OTEL_SERVICE_NAME": "gateway"})
        try:
            cls.workdir = tempfile.TemporaryDirectory()
            cls.worker = cls.stack.worker(str(kit() / "examples" / "refuse_admin.py"),
                                          cwd=cls.workdir.name,
                                          env=otel | {"OTEL_SERVICE_NAME": "python-worker"})
            fixture = root / "fixtures" / "openim" / "before_update_user_info_ex.json"
            cls.request = json.loads(fixture.read_text("utf-8"))
        except BaseException:
            cls.stack.close()
            cls.receiver.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.stack.close()
        cls.receiver.stop()
        cls.workdir.cleanup()

    def span_of(self, service):
        deadline = time.monotonic() + EXPORT_TIMEOUT_S
        while time.monotonic() < deadline:
            for line in list(self.receiver.lines):
                record = json.loads(line) if line.startswith("{") else {}
                span = record.get("span")
                if span and span["service"] == service:
                    return span
            time.sleep(0.05)
        self.fail(f"no span of {service}; the receiver printed {self.receiver.lines}")

    def test_the_workers_span_is_the_gateways_child(self):
        body = json.dumps(dict(self.request, nickName="Alice")).encode()
        status, source, _ = self.stack.post(
            COMMAND, body, {"traceparent": f"00-{TRACE_ID}-{PARENT_SPAN_ID}-01"})
        self.assertEqual((status, source), (200, "worker"))
        gateway = self.span_of("gateway")
        self.assertEqual((gateway["trace_id"], gateway["parent_span_id"]),
                         (TRACE_ID, PARENT_SPAN_ID), gateway)
        worker = self.span_of("python-worker")
        self.assertEqual(worker["trace_id"], TRACE_ID, worker)
        self.assertEqual(worker["parent_span_id"], gateway["span_id"], worker)
        self.assertEqual(worker["name"], COMMAND, worker)
        self.assertEqual(worker["attributes"]["openim.command"], COMMAND, worker)
        self.assertEqual(worker["kind"], 2, worker)  # SPAN_KIND_SERVER


if __name__ == "__main__":
    unittest.main()
