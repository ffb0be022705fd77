// The README's complete worker: the snippet is examples/refuse-admin.js, and that file,
// run against a real nats-server and gateway, refuses an "admin" nickname and allows others.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";

import { Child, cleanEnv, fixture, Stack } from "./stack.mjs";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const EXAMPLE = path.join(HERE, "..", "examples", "refuse-admin.js");
// The README of the package as installed (or of this checkout, by self-reference).
const README = path.join(path.dirname(createRequire(import.meta.url).resolve("openim-gateway-worker")), "..", "README.md");
const COMMAND = "callbackBeforeSetGroupMemberInfoCommand";

test("the README's complete worker is examples/refuse-admin.js, word for word", () => {
  const readme = readFileSync(README, "utf8");
  const blocks = [...readme.matchAll(/```js\n([\s\S]*?)```/g)].map((match) => match[1]);
  assert.ok(blocks.includes(readFileSync(EXAMPLE, "utf8")), "no ```js block of the README equals examples/refuse-admin.js");
});

let stack;
let worker;

before(async () => {
  stack = await Stack.start();
  worker = new Child([process.execPath, EXAMPLE], { ...cleanEnv(), NATS_URL: stack.natsUrl }, path.join(HERE, ".."));
  const ready = await worker.waitFor((line) => line.startsWith("worker ready on"), 20000);
  assert.ok(ready, `the example did not start:\n${worker.tail()}`);
});

after(async () => {
  if (worker) assert.equal(await worker.stop(), 0, worker.tail());
  if (stack) await stack.close();
});

test("the example refuses a nickname containing admin, through the gateway", async () => {
  const body = fixture("before_set_group_member_info.nickname_only.json");
  assert.match(JSON.parse(body).nickName, /admin/);
  const reply = await stack.post(COMMAND, body);
  assert.equal(reply.status, 200);
  assert.equal(reply.source, "worker", JSON.stringify(reply));
  assert.equal(reply.json.nextCode, 1);
  assert.equal(reply.json.errCode, 5001);
  assert.equal(reply.json.errMsg, "nickname not allowed");
});

test("the example lets another change through", async () => {
  const reply = await stack.post(COMMAND, fixture("before_set_group_member_info.role_only.json"));
  assert.equal(reply.status, 200);
  assert.equal(reply.source, "worker", JSON.stringify(reply));
  assert.equal(reply.json.nextCode, 0);
  assert.equal(reply.json.errCode, 0);
});
