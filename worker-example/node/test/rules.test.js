// The rules of worker.js: the shared case table, then each rule on its own.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

import * as ow from "openim-gateway-worker";
import { decide, makeRules, rulesFromEnv } from "../worker.js";

const example = new URL("../../", import.meta.url);
const table = JSON.parse(readFileSync(new URL("cases.json", example), "utf8"));
const fixtures = new URL("../fixtures/openim/", example);

function casePayload(testCase) {
  if (testCase.fixture) return new Uint8Array(readFileSync(new URL(testCase.fixture, fixtures)));
  if (testCase.raw_body !== undefined) return new TextEncoder().encode(testCase.raw_body);
  return new TextEncoder().encode(JSON.stringify(testCase.body));
}

const request = (fields = {}) => ({
  callbackCommand: ow.BEFORE_SET_GROUP_MEMBER_INFO,
  groupID: "3316849202",
  userID: "5427181639",
  nickName: null,
  faceURL: null,
  roleLevel: null,
  ex: null,
  ...fields,
});
const answer = (rules, fields) => decide(rules, request(fields)).toObject();
const ALLOW = { actionCode: 0, errCode: 0, errMsg: "", errDlt: "", nextCode: 0 };
const rejected = (errCode, errMsg) => ({ actionCode: 0, errCode, errMsg, errDlt: "", nextCode: 1 });
const defaults = makeRules();

test("every case of the shared table", async (t) => {
  let count = 0;
  for (const suite of table.suites) {
    const rules = rulesFromEnv(suite.env);
    for (const testCase of suite.cases) {
      count += 1;
      await t.test(`${suite.name} / ${testCase.name}`, async () => {
        const reply = await ow.respond(
          (r) => decide(rules, r),
          ow.parseSetGroupMemberInfoRequest,
          casePayload(testCase),
        );
        const expect = testCase.expect;
        if (expect.worker_service_error_code) {
          assert.equal(reply.body.length, 0);
          assert.equal(reply.headers[ow.HEADER_SERVICE_ERROR_CODE], expect.worker_service_error_code);
          assert.match(reply.headers[ow.HEADER_SERVICE_ERROR], /^bad request: /);
        } else {
          assert.equal(reply.headers, null);
          assert.deepEqual(JSON.parse(new TextDecoder().decode(reply.body)), expect.answer);
        }
      });
    }
  }
  assert.ok(count > 50);
});

test("defaults", () => {
  assert.deepEqual(rulesFromEnv({}), { bannedWords: ["admin", "official", "openim"], maxNicknameChars: 32 });
});

test("blank nicknames are refused but an empty one clears", () => {
  for (const nickName of [" ", "\t", "\n\r\n", "\u00a0", "\u3000\u3000", "\u2003\u2028", "\u0085"]) {
    assert.deepEqual(answer(defaults, { nickName }), rejected(5003, "nickname must not be blank"), JSON.stringify(nickName));
  }
  assert.deepEqual(answer(defaults, { nickName: "" }), ALLOW);
});

test("null fields are not checked", () => {
  assert.deepEqual(answer(defaults, {}), ALLOW);
});

test("normaliseWhitespace trims and collapses Unicode whitespace only", () => {
  for (const [text, expected] of [
    ["", ""],
    ["  Alice  ", "Alice"],
    ["Alice\t\nBob", "Alice Bob"],
    ["\u3000李\u3000\u3000雷\u00a0", "李 雷"],
    ["a\u200bb", "a\u200bb"],
    ["a\ufeffb", "a\ufeffb"],
    ["a\u001fb", "a\u001fb"],
    ["   ", ""],
  ]) {
    assert.equal(ow.normaliseWhitespace(text), expected, JSON.stringify(text));
  }
});

test("a rewrite carries only the nickname", () => {
  assert.deepEqual(answer(defaults, { nickName: " Bob ", faceURL: "https://x/b.png", roleLevel: 60, ex: "{}" }), {
    ...ALLOW,
    nickName: "Bob",
  });
});

test("banned words match in any case, anywhere", () => {
  for (const nickName of ["admin", "ADMIN", "the aDmIn team", "superadministrator", "OpenIM fan"]) {
    assert.deepEqual(answer(defaults, { nickName }), rejected(5001, "nickname contains a banned word"), nickName);
  }
  const rules = makeRules(["Straße", "ПРОВЕРКА"], 32);
  assert.equal(answer(rules, { nickName: "STRAßE 1" }).errCode, 5001);
  assert.equal(answer(rules, { nickName: "проверка" }).errCode, 5001);
  assert.deepEqual(answer(rules, { nickName: "Strasse" }), ALLOW);
});

test("the banned word list from the environment", () => {
  assert.deepEqual(rulesFromEnv({ WORKER_BANNED_WORDS: "Big  Boss, ,spam, " }).bannedWords, ["big boss", "spam"]);
  assert.deepEqual(rulesFromEnv({ WORKER_BANNED_WORDS: "" }).bannedWords, []);
});

test("length counts code points, not bytes or UTF-16 units", () => {
  assert.deepEqual(answer(defaults, { nickName: "雷".repeat(32) }), ALLOW);
  assert.deepEqual(answer(defaults, { nickName: "\u{1F600}".repeat(32) }), ALLOW);
  assert.deepEqual(answer(defaults, { nickName: "x".repeat(33) }), rejected(5002, "nickname is longer than 32 characters"));
  assert.deepEqual(answer(makeRules([], 5), { nickName: "abcdef" }), rejected(5002, "nickname is longer than 5 characters"));
});

test("the avatar must be https", () => {
  for (const faceURL of ["http://x", "ftp://x", "https:/x", "https", " https://x", "ｈttps://x"]) {
    assert.deepEqual(answer(defaults, { faceURL }), rejected(5004, "avatar URL must use https"), faceURL);
  }
  for (const faceURL of ["", "https://x", "HTTPS://X", "hTTpS://x"]) {
    assert.deepEqual(answer(defaults, { faceURL }), ALLOW, faceURL);
  }
});

test("roles", () => {
  assert.deepEqual(
    answer(defaults, { roleLevel: 100 }),
    rejected(5005, "the owner changes through a group owner transfer, not member info"),
  );
  for (const roleLevel of [0, 1, 7, -1, 99, 101, 2 ** 31 - 1]) {
    assert.deepEqual(answer(defaults, { roleLevel }), rejected(5006, "roleLevel must be 20 (member) or 60 (admin)"));
  }
  for (const roleLevel of [20, 60]) assert.deepEqual(answer(defaults, { roleLevel }), ALLOW);
});

test("the first failing rule decides", () => {
  assert.equal(answer(defaults, { nickName: " ", roleLevel: 100 }).errCode, 5003);
  assert.equal(answer(defaults, { nickName: "admin".repeat(10) }).errCode, 5001);
  assert.equal(answer(defaults, { nickName: "x".repeat(40), faceURL: "http://x" }).errCode, 5002);
  assert.equal(answer(defaults, { faceURL: "http://x", roleLevel: 7 }).errCode, 5004);
});

test("a bad WORKER_MAX_NICKNAME_CHARS is one line naming it", () => {
  for (const value of ["abc", "0", "256", "-1", "", " 32", "3.5", "99999999999999999999999"]) {
    assert.throws(
      () => rulesFromEnv({ WORKER_MAX_NICKNAME_CHARS: value }),
      (error) =>
        error instanceof ow.SettingsError &&
        error.message === `WORKER_MAX_NICKNAME_CHARS=${JSON.stringify(value)} is not valid: must be an integer in 1..=255`,
    );
  }
  for (const value of ["1", "32", "255", "+32"]) rulesFromEnv({ WORKER_MAX_NICKNAME_CHARS: value });
});
