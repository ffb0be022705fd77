// A worker on the Node kit (worker-kit/node) (slow-worker.js: a handler of a few milliseconds) stopped with
// SIGTERM under load, against a real nats-server and the real gateway: two Node workers share the callbacks of concurrent callers; one is
// frozen (SIGSTOP) so that messages pile up for it, sent SIGTERM, then thawed (SIGCONT). It
// must answer everything the server routed to it before the unsubscribe and exit 0, so not a
// single callback is answered by the gateway's default.
//
//     cd worker-example/node && node --test integration/drain-under-load.js

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";

import { Child, cleanEnv, ROOT, Stack } from "./stack.js";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const BODY = readFileSync(path.join(ROOT, "fixtures", "openim", "before_set_group_member_info.role_only.json"));
// Long enough that a slow machine answers everything in time, short enough that a callback
// the stopped worker lost shows up as fallback:timeout within the test.
const SETTINGS = { GATEWAY_CALLBACK_TIMEOUT_MS: "2000", GATEWAY_SAFETY_MARGIN_MS: "100" };
const CALLERS = 16;
const LOAD_MS = 3000;
const STOP_AT_MS = 1000;
const FROZEN_MS = 150;
const START_TIMEOUT_MS = 20000;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

let stack;
const workers = [];

async function startWorker() {
  // Two handlers at a time: at the SIGTERM, handlers are running and what the stopped worker
  // received waits for a slot; the drain must answer all of it.
  const worker = new Child([process.execPath, path.join(HERE, "slow-worker.js")], {
    ...cleanEnv(),
    NATS_URL: stack.natsUrl,
    WORKER_LOG_LEVEL: "info",
    WORKER_CONCURRENCY: "2",
  });
  workers.push(worker);
  if ((await worker.waitFor((line) => line.startsWith("worker ready on"), START_TIMEOUT_MS)) === null) {
    throw new Error(`slow-worker.js did not start:\n${worker.tail()}`);
  }
  return worker;
}

/** `callers` closed-loop callers for `ms`; the count of each outcome ("200 worker", ...). */
async function load(callers, ms) {
  const outcomes = new Map();
  const until = Date.now() + ms;
  const caller = async () => {
    while (Date.now() < until) {
      const outcome = await stack.postBefore(BODY);
      outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
    }
  };
  await Promise.all(Array.from({ length: callers }, caller));
  return Object.fromEntries(outcomes);
}

before(async () => {
  stack = await Stack.start(null, SETTINGS);
  await startWorker();
  await startWorker();
  // Both workers answer before the load starts.
  assert.equal(await stack.postBefore(BODY), "200 worker");
});

after(async () => {
  for (const worker of workers) await worker.stop();
  await stack?.close();
});

test("a worker stopped under load drains without a single default", async () => {
  const stopped = workers[0];
  const stopMidLoad = (async () => {
    await sleep(STOP_AT_MS);
    // Frozen, the worker reads nothing: messages wait for it in the socket. The SIGTERM is
    // handled once it runs again, with that backlog to answer.
    stopped.proc.kill("SIGSTOP");
    await sleep(FROZEN_MS);
    stopped.proc.kill("SIGTERM");
    stopped.proc.kill("SIGCONT");
  })();
  const [outcomes] = await Promise.all([load(CALLERS, LOAD_MS), stopMidLoad]);

  const total = Object.values(outcomes).reduce((sum, count) => sum + count, 0);
  assert.ok(total > 50, `too little load to mean anything: ${JSON.stringify(outcomes)}`);
  assert.deepEqual(outcomes, { "200 worker": total }, `callbacks not answered by a worker:\n${stopped.tail()}`);
  let timer;
  const exit = await Promise.race([
    stopped.exited,
    new Promise((resolve) => {
      timer = setTimeout(() => resolve(null), 10000);
    }),
  ]);
  clearTimeout(timer);
  assert.deepEqual(exit, { code: 0, signal: null }, `the stopped worker's exit:\n${stopped.tail()}`);
  assert.ok(
    stopped.matching((line) => line.includes("drained, all replies flushed")).length > 0,
    stopped.tail(),
  );
  // The other worker kept answering alone.
  assert.equal(workers[1].proc.exitCode, null);
  assert.equal(await stack.postBefore(BODY), "200 worker");
});
