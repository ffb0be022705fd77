// The helper module: decisions, request typing, settings and the per-message protocol,
// driven through a fake NATS client (no server needed).
import assert from "node:assert/strict";
import { test } from "node:test";

import * as ow from "openim-gateway-worker";

const COMMAND = ow.BEFORE_SET_GROUP_MEMBER_INFO;
const encode = (text) => new TextEncoder().encode(text);
const decode = (bytes) => new TextDecoder().decode(bytes);
const ROLE_ONLY = encode(
  '{"callbackCommand":"callbackBeforeSetGroupMemberInfoCommand","groupID":"g","userID":"u","nickName":null,"faceURL":null,"roleLevel":20,"ex":null}\n',
);
ow.log.level = 100; // quiet

class FakeHeaders {
  constructor(map) {
    this.map = new Map(Object.entries(map));
  }
  has(name) {
    return this.map.has(name);
  }
  get(name) {
    return this.map.get(name) ?? "";
  }
}

class FakeSubscription {
  constructor() {
    this.messages = [];
    this.drained = false;
    this.wake = null;
  }
  push(msg) {
    this.messages.push(msg);
    this.wake?.();
  }
  async drain() {
    this.drained = true;
    this.wake?.();
  }
  async *[Symbol.asyncIterator]() {
    for (;;) {
      if (this.messages.length) yield this.messages.shift();
      else if (this.drained) return;
      else await new Promise((resolve) => (this.wake = resolve));
    }
  }
}

class FakeClient {
  constructor() {
    this.published = [];
    this.subscribed = [];
    this.flushes = 0;
  }
  publish(subject, data, options) {
    this.published.push({ subject, data, headers: options?.headers ?? null });
  }
  subscribe(subject, options) {
    const subscription = new FakeSubscription();
    this.subscribed.push({ subject, queue: options.queue, subscription });
    return subscription;
  }
  async flush() {
    this.flushes += 1;
  }
}

function message({ data = ROLE_ONLY, reply = "_INBOX.1", deadline, headers = {} } = {}) {
  const all = { "X-Request-Id": "req-1", "X-Callback-Command": COMMAND, "X-Timeout-Ms": "5000", ...headers };
  if (deadline !== undefined) all["X-Deadline-Unix-Ms"] = String(deadline);
  return { subject: `openim.callback.${COMMAND}`, reply, data, headers: new FakeHeaders(all) };
}

function makeWorker(handler = () => ow.allow(), overrides = {}) {
  const client = new FakeClient();
  const settings = { ...ow.readSettings({}), ...overrides };
  return { worker: new ow.Worker(client, settings, { [COMMAND]: handler }), client };
}

const now = () => Number(ow.nowUnixMs());

test("allow writes the five common fields", () => {
  assert.equal(JSON.stringify(ow.allow()), '{"actionCode":0,"errCode":0,"errMsg":"","errDlt":"","nextCode":0}');
});

test("reject", () => {
  const decision = ow.reject(5001, "no");
  assert.ok(decision.isReject);
  assert.deepEqual(decision.toObject(), { actionCode: 0, errCode: 5001, errMsg: "no", errDlt: "", nextCode: 1 });
  for (const bad of [0, 99, 2 ** 31, true, "5001", 5001.5]) assert.throws(() => ow.reject(bad, "no"));
});

test("modify drops null fields and refuses the common ones", () => {
  assert.deepEqual(ow.modify(COMMAND, { nickName: "Bob", faceURL: null, ex: undefined }).toObject(), {
    actionCode: 0,
    errCode: 0,
    errMsg: "",
    errDlt: "",
    nextCode: 0,
    nickName: "Bob",
  });
  assert.throws(() => ow.modify(COMMAND, { nextCode: 1 }));
});

test("the typed request", () => {
  const request = ow.parseSetGroupMemberInfoRequest(ow.parseJson(ROLE_ONLY));
  assert.equal(request.roleLevel, 20);
  assert.equal(request.nickName, null);
});

test("bad bodies are BadRequest and never quote the body", () => {
  for (const body of [
    "",
    "not json",
    '{"a":',
    '{"x":NaN}',
    "{} {}",
    "null",
    "[]",
    "{}",
    '{"callbackCommand":"c","groupID":"g"}',
    '{"callbackCommand":"c","groupID":null,"userID":"u"}',
    '{"callbackCommand":"c","groupID":"g","userID":"u","roleLevel":"60"}',
    '{"callbackCommand":"c","groupID":"g","userID":"u","roleLevel":true}',
    '{"callbackCommand":"c","groupID":"g","userID":"u","roleLevel":60.5}',
    '{"callbackCommand":"c","groupID":"g","userID":"u","roleLevel":2147483648}',
    '{"callbackCommand":"c","groupID":"g","userID":"u","nickName":["s3cret"]}',
  ]) {
    assert.throws(
      () => ow.parseSetGroupMemberInfoRequest(ow.parseJson(encode(body))),
      (error) => error instanceof ow.BadRequest && !error.message.includes("s3cret"),
      body,
    );
  }
  assert.throws(() => ow.parseJson(new Uint8Array([0xff, 0xfe])), ow.BadRequest);
});

test("the deadline header", () => {
  assert.equal(ow.deadlineUnixMs(undefined), null);
  assert.equal(ow.deadlineUnixMs("1732550400123"), 1732550400123n);
  for (const malformed of ["", "soon", "-1", "1.5", "99999999999999999999999"]) {
    assert.equal(ow.deadlineUnixMs(malformed), null, malformed);
  }
  assert.equal(ow.isPast(1000n, 1000n), false);
  assert.equal(ow.isPast(1000n, 1001n), true);
});

test("settings: defaults and every variable", () => {
  assert.deepEqual(ow.readSettings({}), {
    natsServers: ["nats://127.0.0.1:4222"],
    subjectPrefix: "openim.callback",
    concurrency: 64,
    logLevel: 20,
    security: { credsFile: null, nkeyFile: null, tlsCaFile: null, tlsCertFile: null, tlsKeyFile: null },
  });
  const parsed = ow.readSettings({
    NATS_URL: "nats://a:4222, tls://b:4443,c:1234",
    WORKER_SUBJECT_PREFIX: "tenant42.callbacks",
    WORKER_CONCURRENCY: "8",
    WORKER_LOG_LEVEL: "debug",
  });
  assert.deepEqual(parsed.natsServers, ["nats://a:4222", "tls://b:4443", "nats://c:1234"]);
  assert.equal(parsed.subjectPrefix, "tenant42.callbacks");
  assert.equal(parsed.concurrency, 8);
});

test("settings: a bad NATS_URL never shows its password", () => {
  for (const value of [
    "nats://bob:Hun/ter2x@h:1",
    "nats://bob:Hun?ter2x@h:1",
    "nats://bob:Hun#ter2x@h:1",
    "nats://bob:Hun,ter2x@h:1",
    "nats://bob:4222/ter2x@h:1",
    "nats://bob:Hunter2x@h:nope",
    "nats://a:1,tls://bob:Hun@ter2x@h:x",
  ]) {
    assert.throws(
      () => ow.readSettings({ NATS_URL: value }),
      (error) =>
        error instanceof ow.SettingsError &&
        !error.message.includes("Hun") &&
        !error.message.includes("ter2x") &&
        error.message.includes("bob:***@"),
      value,
    );
  }
  assert.equal(ow.redactNatsUrls("nats://t0k/en@h:1, nats://h:2"), "nats://***@h:1, nats://h:2");
});

test("settings: a bad value is one line naming the variable", () => {
  for (const [variable, value] of [
    ["NATS_URL", ""],
    ["NATS_URL", "http://a:4222"],
    ["NATS_URL", "nats://a:notaport"],
    ["NATS_URL", "a,,b"],
    ["WORKER_SUBJECT_PREFIX", "openim.*"],
    ["WORKER_SUBJECT_PREFIX", "a..b"],
    ["WORKER_SUBJECT_PREFIX", "has space"],
    ["WORKER_CONCURRENCY", "0"],
    ["WORKER_LOG_LEVEL", "loud"],
  ]) {
    assert.throws(
      () => ow.readSettings({ [variable]: value }),
      (error) =>
        error instanceof ow.SettingsError &&
        error.message.startsWith(`${variable}=${JSON.stringify(value)} is not valid: `) &&
        !error.message.includes("\n"),
      `${variable}=${value}`,
    );
  }
});

test("subscribes in the queue group and confirms with a flush", async () => {
  const { worker, client } = makeWorker(undefined, { subjectPrefix: "tenant.cb" });
  await worker.subscribe();
  assert.deepEqual(
    client.subscribed.map(({ subject, queue }) => [subject, queue]),
    [[`tenant.cb.${COMMAND}`, "openim-workers"]],
  );
  assert.equal(client.flushes, 1);
  await worker.drain(1000);
});

test("answers on the reply subject without the request's headers", async () => {
  const { worker, client } = makeWorker(() => ow.reject(5005, "no"));
  await worker.handle(COMMAND, message({ deadline: now() + 5000 }));
  assert.equal(client.published.length, 1);
  const [{ subject, data, headers }] = client.published;
  assert.equal(subject, "_INBOX.1");
  assert.equal(headers, null);
  assert.equal(JSON.parse(decode(data)).errCode, 5005);
});

test("skips a message past its deadline", async () => {
  const seen = [];
  const { worker, client } = makeWorker((request) => {
    seen.push(request);
    return ow.allow();
  });
  await worker.handle(COMMAND, message({ deadline: now() - 1 }));
  assert.deepEqual([client.published, seen], [[], []]);
});

test("a malformed deadline is ignored; no reply subject means no reply", async () => {
  const { worker, client } = makeWorker();
  await worker.handle(COMMAND, message({ deadline: "soon" }));
  assert.equal(client.published.length, 1);
  await worker.handle(COMMAND, message({ reply: "" }));
  assert.equal(client.published.length, 1);
});

test("a bad body gets a 400 service error", async () => {
  const { worker, client } = makeWorker();
  await worker.handle(COMMAND, message({ data: encode("not json") }));
  const [{ data, headers }] = client.published;
  assert.equal(data.length, 0);
  assert.deepEqual(headers, {
    "Nats-Service-Error": "bad request: body is not valid JSON",
    "Nats-Service-Error-Code": "400",
  });
});

test("a throwing handler, or one returning something else, gets a 500", async () => {
  const { worker, client } = makeWorker(() => {
    throw new Error("boom\nsecret");
  });
  await worker.handle(COMMAND, message());
  assert.equal(client.published[0].headers["Nats-Service-Error-Code"], "500");
  assert.ok(!client.published[0].headers["Nats-Service-Error"].includes("secret"));
  const other = makeWorker(() => ({ actionCode: 0 }));
  await other.worker.handle(COMMAND, message());
  assert.equal(other.client.published[0].headers["Nats-Service-Error-Code"], "500");
});

test("async handlers are awaited; untyped commands get the JSON object", async () => {
  const { worker, client } = makeWorker(async () => ow.modify(COMMAND, { nickName: "x" }));
  await worker.handle(COMMAND, message());
  assert.equal(JSON.parse(decode(client.published[0].data)).nickName, "x");
  const plain = new FakeClient();
  const untyped = new ow.Worker(plain, ow.readSettings({}), {
    callbackBeforeSendSingleMsgCommand: (request) => ow.reject(5100, request.x),
  });
  await untyped.handle("callbackBeforeSendSingleMsgCommand", message({ data: encode('{"x":"y"}') }));
  assert.equal(JSON.parse(decode(plain.published[0].data)).errMsg, "y");
});

test("concurrency is bounded and drain answers everything received", async () => {
  let running = 0;
  let most = 0;
  let release;
  const released = new Promise((resolve) => (release = resolve));
  const { worker, client } = makeWorker(
    async () => {
      running += 1;
      most = Math.max(most, running);
      await released;
      running -= 1;
      return ow.allow();
    },
    { concurrency: 3 },
  );
  await worker.subscribe();
  const subscription = client.subscribed[0].subscription;
  for (let i = 0; i < 10; i += 1) subscription.push(message());
  await new Promise((resolve) => setTimeout(resolve, 50));
  assert.equal(most, 3);
  assert.equal(worker.inFlight.size, 3);
  assert.equal(subscription.messages.length, 6); // one more is waiting for a slot
  release();
  assert.equal(await worker.drain(2000), true);
  assert.equal(most, 3);
  assert.equal(client.published.length, 10);
  assert.ok(subscription.drained);
});

test("drain gives up after the grace", async () => {
  const { worker } = makeWorker(() => new Promise(() => {}));
  await worker.dispatch(COMMAND, message());
  assert.equal(await worker.drain(50), false);
});

// --- The after-stream consumer's parts that need no server (the rest is tested against a
// real nats-server and gateway in ../integration) ---

const AFTER = "callbackAfterSetGroupMemberInfoCommand";

class FakeJsMessage {
  constructor(data = '{"groupID":"g"}', headers = {}) {
    this.subject = `openim.callback.${AFTER}`;
    this.data = encode(data);
    this.headers = new FakeHeaders({ "X-Request-Id": "req-1", ...headers });
    this.headers.keys = () => [...this.headers.map.keys()];
    this.outcome = [];
  }
  async ackAck() {
    this.outcome.push("ack");
    return true;
  }
  nak(delay) {
    this.outcome.push(["nak", delay]);
  }
  term() {
    this.outcome.push("term");
  }
  working() {
    this.outcome.push("working");
  }
}

const afterConsumer = (handler, options = {}) =>
  new ow.AfterStreamConsumer({}, { stream: "OPENIM_AFTER", durable: "d", handler, ...options });

test("after stream: names, subjects and the command", () => {
  for (const good of ["OPENIM_AFTER", "member-info-log", "a_b"]) assert.ok(ow.isValidName(good), good);
  for (const bad of ["", "a.b", "a b", "a*", "a>", "a/b", "a\\b", "a\tb", null]) {
    assert.ok(!ow.isValidName(bad), JSON.stringify(bad));
  }
  assert.equal(ow.parseNameSetting({}, "V", "dflt"), "dflt");
  assert.throws(() => ow.parseNameSetting({ V: "a.b" }, "V", "dflt"), ow.SettingsError);
  assert.throws(() => afterConsumer(() => {}, { concurrency: 0 }), RangeError);
  assert.throws(() => afterConsumer(() => {}, { durable: "a.b" }), /durable/);

  assert.deepEqual(ow.afterSubjects("p", null), []);
  assert.deepEqual(ow.afterSubjects("p", AFTER), [`p.${AFTER}`]);
  assert.deepEqual(ow.afterSubjects("p", ["a", "b"]), ["p.a", "p.b"]);
  for (const bad of [[], ["a b"], ["a.>"]]) assert.throws(() => ow.afterSubjects("p", bad));
  assert.equal(ow.afterCommand("p.x", { "X-Callback-Command": "y" }, "p"), "y");
  assert.equal(ow.afterCommand("p.x", {}, "p"), "x");
  const config = afterConsumer(() => {}, { commands: ["a", "b"] }).consumerConfig();
  assert.deepEqual(config.filter_subjects, ["openim.callback.a", "openim.callback.b"]);
  assert.equal(config.filter_subject, undefined);
  assert.equal(config.ack_policy, "explicit");
  assert.equal(config.ack_wait, 30_000_000_000);
});

test("after stream: ack after the handler, nak when it throws, term for a bad body", async () => {
  const seen = [];
  const consumer = afterConsumer(
    async (command, body, headers) => {
      seen.push([command, body, headers["X-Request-Id"]]);
      if (body.fail) throw new Error("down");
      if (body.refuse) throw new ow.BadRequest("not for me");
    },
    { nakDelayMs: 2500 },
  );
  const messages = [
    new FakeJsMessage(),
    new FakeJsMessage('{"fail":1}'),
    new FakeJsMessage("not json"),
    new FakeJsMessage('{"refuse":1}'),
  ];
  for (const msg of messages) await consumer.handle(msg);
  assert.deepEqual(
    messages.map((msg) => msg.outcome),
    [["ack"], [["nak", 2500]], ["term"], ["term"]],
  );
  assert.deepEqual(seen[0], [AFTER, { groupID: "g" }, "req-1"]);
  assert.deepEqual(consumer.stats, { acked: 1, retried: 1, refused: 2, unconfirmed: 0, abandoned: 0 });
});

test("after stream: a long handler tells the server it is still working", async () => {
  const consumer = afterConsumer(() => new Promise((resolve) => setTimeout(resolve, 130)), { ackWaitMs: 100 });
  const msg = new FakeJsMessage();
  await consumer.handle(msg);
  assert.deepEqual(msg.outcome, ["working", "working", "ack"]);
});
