// The kit's additions: answers checked against the command's shape, every bad setting at
// once, misspelled WORKER_* variables, and connection failures logged once per cause.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createServer } from "node:net";
import { test } from "node:test";

import * as ow from "openim-gateway-worker";

const MEMBER = ow.BEFORE_SET_GROUP_MEMBER_INFO;

test("answer.allow and answer.reject are the protocol's shapes", () => {
  assert.deepEqual(ow.answer.allow().toObject(), { actionCode: 0, errCode: 0, errMsg: "", errDlt: "", nextCode: 0 });
  assert.deepEqual(JSON.parse(JSON.stringify(ow.answer.reject(5001, "no"))), {
    actionCode: 0,
    errCode: 5001,
    errMsg: "no",
    errDlt: "",
    nextCode: 1,
  });
  for (const code of [99, 0, -1, 2 ** 31, 5001.5, "5001"]) assert.throws(() => ow.answer.reject(code, "x"), RangeError);
  assert.throws(() => ow.answer.reject(5001, 5), TypeError);
  assert.throws(() => ow.answer.reject(5001, "\ud800"), TypeError);
});

test("answer.modify writes only the command's fields, with their types", () => {
  assert.deepEqual(ow.answer.modify(MEMBER, { nickName: "Ada", roleLevel: 60, ex: null }).fields, {
    nickName: "Ada",
    roleLevel: 60,
  });
  const refused = [
    [MEMBER, { nickname: "Ada" }, /has no field nickname/],
    [MEMBER, { roleLevel: 60.5 }, /32-bit integer/],
    [MEMBER, { roleLevel: 2 ** 31 }, /32-bit integer/],
    [MEMBER, { nickName: 5 }, /a string/],
    [MEMBER, { nickName: "\udc00" }, /lone surrogates/],
    [MEMBER, { errCode: 1 }, /not errCode/],
    [MEMBER, { NEXTCODE: 1 }, /not NEXTCODE/],
    [MEMBER, ["nickName"], /plain object/],
    ["callbackBeforeMsgModifyCommand", { content: "[1]" }, /JSON object/],
    ["callbackBeforeMsgModifyCommand", { content: "{" }, /JSON object/],
    ["callbackBeforeMsgModifyCommand", { options: { a: 1 } }, /true or false/],
    ["callbackBeforeMsgModifyCommand", { offlinePushInfo: { iOSBadgeCount: 1 } }, /true or false/],
    ["callbackBeforeUserRegisterCommand", { users: [{ nickname: "x" }] }, /userID must be set/],
    ["callbackBeforeUserRegisterCommand", { users: [null] }, /null entries/],
    ["callbackBeforeImportFriendsCommand", { friendUserIDs: "a" }, /a list/],
    ["callbackBeforeSendSingleMsgCommand", {}, /takes no changes/],
    ["callbackAfterSetGroupMemberInfoCommand", {}, /after-callback/],
    ["callbackNoSuchCommand", {}, /unknown command/],
  ];
  for (const [command, changes, message] of refused) {
    assert.throws(() => ow.answer.modify(command, changes), message, `${command} ${JSON.stringify(changes)}`);
  }
  // The one-argument form of the old helper names the fix.
  assert.throws(() => ow.modify({ nickName: "x" }), /name the command first/);
  assert.deepEqual(ow.answer.modify("callbackBeforeMsgModifyCommand", { content: '{"text":"hi"}' }).fields, {
    content: '{"text":"hi"}',
  });
  assert.deepEqual(
    ow.answer.modify("callbackBeforeUserRegisterCommand", { users: [{ userID: "u1", nickname: "A" }] }).fields.users,
    [{ userID: "u1", nickname: "A" }],
  );
});

test("readSettings reports every bad value at once, one line each", () => {
  let caught;
  try {
    ow.readSettings({ NATS_URL: "http://x", WORKER_SUBJECT_PREFIX: "a.*", WORKER_CONCURRENCY: "0", WORKER_LOG_LEVEL: "loud" });
  } catch (error) {
    caught = error;
  }
  assert.ok(caught instanceof ow.SettingsError);
  assert.equal(caught.problems.length, 4);
  assert.deepEqual(
    caught.problems.map((line) => line.split("=")[0]),
    ["NATS_URL", "WORKER_SUBJECT_PREFIX", "WORKER_CONCURRENCY", "WORKER_LOG_LEVEL"],
  );
  assert.equal(caught.message, caught.problems.join("\n"));
});

test("a misspelled WORKER_* variable is named with the one it probably means", () => {
  assert.equal(ow.editDistance("WORKER_CONCURENCY", "WORKER_CONCURRENCY"), 1);
  assert.equal(ow.editDistance("", "abc"), 3);
  assert.deepEqual(
    ow.settingsProblems(
      { WORKER_CONCURENCY: "8", worker_log_level: "info", WORKER_BANED_WORDS: "x", WORKER_AFTER_STREAM: "S", HOME: "/" },
      { variables: ["WORKER_BANNED_WORDS"] },
    ),
    [
      "WORKER_BANED_WORDS is not a setting of this worker: did you mean WORKER_BANNED_WORDS?",
      "WORKER_CONCURENCY is not a setting of this worker: did you mean WORKER_CONCURRENCY?",
      "worker_log_level is not a setting of this worker: did you mean WORKER_LOG_LEVEL?",
    ],
  );
  assert.deepEqual(ow.settingsProblems({ WORKER_CONCURRENCY: "8", WORKER_HTTP_PORT: "8080" }), []);
});

test("LogThrottle admits a key once per interval and counts what it held back", () => {
  let now = 0;
  const throttle = new ow.LogThrottle(30000, () => now);
  assert.equal(throttle.admit("refused"), 0);
  assert.equal(throttle.admit("refused"), null);
  assert.equal(throttle.admit("timeout"), 0);
  now = 29999;
  assert.equal(throttle.admit("refused"), null);
  now = 30000;
  assert.equal(throttle.admit("refused"), 2);
  assert.equal(throttle.admit("refused"), null);
});

function closedPort() {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

test("run(): no server logs one line per cause naming it, and a signal stops it with 0", async () => {
  const port = await closedPort();
  const program = `const ow = require("openim-gateway-worker");
ow.run({ [ow.BEFORE_SET_GROUP_MEMBER_INFO]: () => ow.answer.allow() }, { name: "throttle-check" }).then((code) => process.exit(code));`;
  const child = spawn(process.execPath, ["-e", program], {
    env: { PATH: process.env.PATH, NATS_URL: `nats://127.0.0.1:${port}` },
    cwd: process.cwd(),
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stderr = "";
  child.stderr.on("data", (chunk) => (stderr += chunk));
  const exited = new Promise((resolve) => child.once("exit", (code) => resolve(code)));
  // Three attempts or so, a second apart.
  await new Promise((resolve) => setTimeout(resolve, 3500));
  child.kill("SIGTERM");
  assert.equal(await exited, 0, stderr);
  const failures = stderr.split("\n").filter((line) => line.includes("cannot connect to NATS"));
  assert.equal(failures.length, 1, stderr);
  assert.match(failures[0], new RegExp(`ERROR throttle-check: cannot connect to NATS at nats://127\\.0\\.0\\.1:${port}: `));
});

test("a Decision cannot be built around the checks", () => {
  assert.throws(() => new ow.Decision(undefined, { nextCode: 1, errCode: 5 }), /answer\.allow\(\)/);
  assert.throws(() => new ow.Decision({ nextCode: 1, errCode: 5 }), TypeError);
  assert.ok(Object.isFrozen(ow.answer.allow()));
  assert.ok(Object.isFrozen(ow.answer.allow().fields));
});
