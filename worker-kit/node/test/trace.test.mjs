// Traces: with OTEL_EXPORTER_OTLP_ENDPOINT set for the gateway and for a worker on the
// installed kit (with OpenTelemetry's packages beside it), the worker's span is the child of
// the gateway's, which continues the caller's traceparent; both decoded by a real OTLP
// receiver (tests/otlp/receiver.py of the repository, on OpenTelemetry's own protobuf
// classes, run by the repository's .venv Python or $OTLP_RECEIVER_PYTHON).
import assert from "node:assert/strict";
import path from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";

import { Child, cleanEnv, fixture, repository, Stack } from "./stack.mjs";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const EXAMPLE = path.join(HERE, "..", "examples", "refuse-admin.js");
const COMMAND = "callbackBeforeSetGroupMemberInfoCommand";
const TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_SPAN_ID = "00f067aa0ba902b7";

let receiver;
let stack;
let worker;

function spanOf(service, timeoutMs = 20000) {
  return receiver
    .waitFor((line) => line.startsWith("{") && JSON.parse(line).span?.service === service, timeoutMs)
    .then((line) => (line === null ? null : JSON.parse(line).span));
}

before(async () => {
  const python = process.env.OTLP_RECEIVER_PYTHON || path.join(repository(), ".venv", "bin", "python");
  receiver = new Child([python, path.join(repository(), "tests", "otlp", "receiver.py")], cleanEnv());
  const line = await receiver.waitFor((text) => text.startsWith("otlp receiver listening on"), 20000);
  assert.ok(line, `the OTLP receiver did not start (${python}; scripts/test installs opentelemetry-proto into .venv):\n${receiver.tail()}`);
  const otel = { OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${line.split(" ").pop()}`, OTEL_BSP_SCHEDULE_DELAY: "100" };
  stack = await Stack.start({ ...otel, OTEL_SERVICE_NAME: "gateway" });
  worker = new Child(
    [process.execPath, EXAMPLE],
    { ...cleanEnv(), ...otel, NATS_URL: stack.natsUrl, OTEL_SERVICE_NAME: "node-worker" },
    path.join(HERE, ".."),
  );
  const ready = await worker.waitFor((text) => text.startsWith("worker ready on"), 20000);
  assert.ok(ready, `the example did not start:\n${worker.tail()}`);
});

after(async () => {
  if (worker) await worker.stop();
  if (stack) await stack.close();
  if (receiver) await receiver.stop();
});

test("the worker's span is the child of the gateway's, which continues the caller's trace", async () => {
  const reply = await stack.post(COMMAND, fixture("before_set_group_member_info.role_only.json"), {
    traceparent: `00-${TRACE_ID}-${PARENT_SPAN_ID}-01`,
  });
  assert.equal(reply.source, "worker", JSON.stringify(reply));
  const gateway = await spanOf("gateway");
  assert.ok(gateway, `no gateway span; the receiver printed:\n${receiver.lines.stdout.join("\n")}`);
  assert.equal(gateway.trace_id, TRACE_ID);
  assert.equal(gateway.parent_span_id, PARENT_SPAN_ID);
  const span = await spanOf("node-worker");
  assert.ok(span, `no worker span; the worker said:\n${worker.tail()}\nthe receiver printed:\n${receiver.lines.stdout.join("\n")}`);
  assert.equal(span.trace_id, TRACE_ID, JSON.stringify(span));
  assert.equal(span.parent_span_id, gateway.span_id, JSON.stringify(span));
  assert.equal(span.name, COMMAND);
  assert.equal(span.attributes["openim.command"], COMMAND);
  assert.equal(span.kind, 2, "SPAN_KIND_SERVER");
});
