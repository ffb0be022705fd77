// consumeAfterStream and after-worker.js against a real nats-server with JetStream and the
// real gateway with GATEWAY_AFTER_STREAM: after-callbacks posted while no worker runs are
// handled once each, byte for byte and in order, by a consumer that starts later.
//
//     cd worker-example/node && node --test integration/after-stream.js
//
// (Not named *.test.js: a plain `node --test` runs the unit tests only, without servers.)

import assert from "node:assert/strict";
import path from "node:path";
import { afterEach, beforeEach, test } from "node:test";
import { fileURLToPath } from "node:url";

import { connect } from "nats";

import * as ow from "openim-gateway-worker";
import { AFTER_SET_MEMBER, Child, cleanEnv, FIXTURE, Stack } from "./stack.js";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const STREAM = "OPENIM_AFTER_NODE";
// Short, so that a message that was not acknowledged comes back within the test.
const ACK_WAIT_MS = 1000;
// How long a run goes on after the expected messages, to catch any delivered again.
const SETTLE_MS = ACK_WAIT_MS + 1000;
const WAIT_MS = 15000;
const raw = (data) => Buffer.from(data);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

ow.log.level = 100; // quiet

let stack;
let client;

beforeEach(async () => {
  stack = await Stack.start(STREAM);
  client = await connect({ servers: stack.natsUrl });
});

afterEach(async () => {
  await client?.close();
  await stack?.close();
});

const post = async (count) => {
  const ids = [];
  for (let i = 0; i < count; i += 1) ids.push(await stack.postAfter(FIXTURE));
  return ids;
};

/** Runs a consumer until `count` messages were handled and `settleMs` more passed; resolves
 * to `{ stats, items }` with what the handler saw, in the order it was called. */
async function runConsumer(durable, handler, count, { settleMs = SETTLE_MS, ...options } = {}) {
  const items = [];
  let wake = () => {};
  const stop = new AbortController();
  const consuming = ow.consumeAfterStream(client, {
    stream: STREAM,
    durable,
    ackWaitMs: ACK_WAIT_MS,
    ...options,
    signal: stop.signal,
    handler: async (command, body, headers) => {
      items.push({ command, body, headers });
      wake();
      if (handler) await handler(command, body, headers);
    },
  });
  try {
    const deadline = Date.now() + WAIT_MS;
    while (items.length < count) {
      if (Date.now() > deadline) throw new Error(`received ${items.length} of ${count} messages`);
      await Promise.race([new Promise((resolve) => (wake = resolve)), sleep(100)]);
    }
    await sleep(settleMs);
  } finally {
    stop.abort();
  }
  return { stats: await consuming, items };
}

const consumerInfo = async (durable) => (await client.jetstreamManager()).consumers.info(STREAM, durable);
const ids = (items) => items.map(({ headers }) => headers["X-Request-Id"]);

test("a late consumer gets each stored callback once, byte for byte, in order", async () => {
  const sent = await post(3);
  const info = await (await client.jetstreamManager()).streams.info(STREAM);
  assert.equal(info.state.messages, 3, "the gateway stored the three callbacks");

  let { stats, items } = await runConsumer("late", null, 3, { parse: raw });
  assert.equal(items.length, 3, "once each");
  for (const { body } of items) assert.ok(FIXTURE.equals(body), "byte for byte");
  assert.deepEqual(ids(items), sent, "in the order they were posted");
  assert.deepEqual(
    items.map(({ command, headers }) => [command, headers["X-Callback-Command"]]),
    Array(3).fill([AFTER_SET_MEMBER, AFTER_SET_MEMBER]),
  );
  assert.deepEqual(stats, { acked: 3, retried: 0, refused: 0, unconfirmed: 0, abandoned: 0 });
  const consumer = await consumerInfo("late");
  assert.deepEqual(
    [consumer.num_ack_pending, consumer.num_pending, consumer.num_redelivered, consumer.ack_floor.stream_seq],
    [0, 0, 0, 3],
  );

  // The same durable again: nothing new, also after the ack wait.
  ({ stats, items } = await runConsumer("late", null, 0, { parse: raw }));
  assert.deepEqual(items, [], "a second run of the durable got messages again");
  assert.equal(stats.acked, 0);

  // A callback posted now is the only one the next run gets.
  const newest = await post(1);
  ({ items } = await runConsumer("late", null, 1, { parse: raw }));
  assert.deepEqual(ids(items), newest);
  assert.ok(FIXTURE.equals(items[0].body));
});

test("the body is parsed JSON and commands filter the subjects", async () => {
  await post(2);
  let { items } = await runConsumer("parsed", null, 2, { settleMs: 200, commands: [AFTER_SET_MEMBER] });
  assert.deepEqual(
    items.map(({ body }) => body),
    Array(2).fill(JSON.parse(FIXTURE.toString("utf8"))),
  );
  assert.equal((await consumerInfo("parsed")).config.filter_subject, `openim.callback.${AFTER_SET_MEMBER}`);

  // Other after-callbacks' subjects, in the stream but with nothing stored.
  const others = ["callbackAfterJoinGroupCommand", "callbackAfterQuitGroupCommand"];
  ({ items } = await runConsumer("others", null, 0, { commands: others }));
  assert.deepEqual(items, []);
  const consumer = await consumerInfo("others");
  assert.equal(consumer.num_pending, 0);
  assert.deepEqual([...consumer.config.filter_subjects].sort(), others.map((c) => `openim.callback.${c}`));
});

test("a message whose handler threw is delivered again, then acknowledged", async () => {
  const sent = await post(3);
  let failed = false;
  const flaky = (command, body, headers) => {
    if (headers["X-Request-Id"] === sent[1] && !failed) {
      failed = true;
      throw new Error("the database is down");
    }
  };
  const { stats, items } = await runConsumer("flaky", flaky, 4, { parse: raw, nakDelayMs: 200 });
  const seen = ids(items);
  assert.equal(seen[0], sent[0]);
  assert.deepEqual([...seen].sort(), [...sent, sent[1]].sort());
  assert.deepEqual([stats.acked, stats.retried], [3, 1]);
  const consumer = await consumerInfo("flaky");
  assert.deepEqual([consumer.num_ack_pending, consumer.num_pending], [0, 0]);
  assert.deepEqual((await runConsumer("flaky", null, 0)).items, []);
});

test("at most `concurrency` handlers run at once", async () => {
  const sent = await post(6);
  let running = 0;
  let most = 0;
  const slow = async () => {
    running += 1;
    most = Math.max(most, running);
    await sleep(200);
    running -= 1;
  };
  const { stats, items } = await runConsumer("bounded", slow, 6, { settleMs: 500, concurrency: 2 });
  assert.equal(most, 2);
  assert.deepEqual(ids(items), sent);
  assert.equal(stats.acked, 6);
});

test("a stop lets the running handler finish and acknowledges it", async () => {
  const sent = await post(3);
  const stop = new AbortController();
  const finished = [];
  const stats = await ow.consumeAfterStream(client, {
    stream: STREAM,
    durable: "stopping",
    concurrency: 1,
    ackWaitMs: ACK_WAIT_MS,
    signal: stop.signal,
    handler: async (command, body, headers) => {
      stop.abort(); // the stop comes while this handler runs
      await sleep(500);
      finished.push(headers["X-Request-Id"]);
    },
  });
  assert.deepEqual(finished, sent.slice(0, 1));
  assert.deepEqual([stats.acked, stats.abandoned], [1, 0]);
  const consumer = await consumerInfo("stopping");
  assert.deepEqual([consumer.num_ack_pending, consumer.ack_floor.stream_seq], [0, 1]);
  const { items } = await runConsumer("stopping", null, 2, { parse: raw });
  assert.deepEqual(ids(items), sent.slice(1));
});

function startExample(extraEnv = {}) {
  return new Child(["node", path.join(HERE, "..", "after-worker.js")], {
    ...cleanEnv(),
    NATS_URL: stack.natsUrl,
    WORKER_AFTER_STREAM: STREAM,
    WORKER_AFTER_DURABLE: "example",
    ...extraEnv,
  });
}

async function readyExample() {
  const worker = startExample();
  const ready = await worker.waitFor((line) => line.startsWith("worker ready on stream"), WAIT_MS);
  assert.ok(ready, worker.tail());
  assert.ok(ready.includes(`openim.callback.${AFTER_SET_MEMBER}`), ready);
  return worker;
}

test("after-worker.js logs each missed change once and exits 0 on SIGTERM", async () => {
  const sent = await post(2);
  const changed = (line) => line.includes("member info changed:");
  const worker = await readyExample();
  try {
    const lines = await worker.waitFor(changed, WAIT_MS, "stderr", 2);
    assert.ok(lines, worker.tail());
    lines.forEach((line, index) => {
      assert.ok(line.includes('group="3316849202" user="5427181639" nickName="Alice"'), line);
      assert.ok(line.includes(`request_id=${sent[index]}`), line);
    });
    assert.equal(await worker.stop(), 0, worker.tail());
  } finally {
    await worker.stop("SIGKILL");
  }

  const again = await readyExample();
  try {
    await sleep(1500);
    assert.deepEqual(again.matching(changed), [], "the second start logged changes again");
    const [newest] = await post(1);
    const line = await again.waitFor(changed, WAIT_MS, "stderr");
    assert.ok(line, again.tail());
    assert.ok(line.includes(`request_id=${newest}`), line);
    assert.equal(await again.stop(), 0, again.tail());
  } finally {
    await again.stop("SIGKILL");
  }
});

test("after-worker.js: a bad stream name stops the start with exit code 2", async () => {
  const worker = startExample({ WORKER_AFTER_STREAM: "a.b" });
  const { code } = await worker.exited;
  assert.equal(code, 2);
  assert.ok(worker.tail().includes("WORKER_AFTER_STREAM"), worker.tail());
});
