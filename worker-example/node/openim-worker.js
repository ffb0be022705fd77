// openim-worker: the NATS side of an openim-gateway worker, so that a worker is only its rules.
//
// You write a handler that takes a typed request and returns a decision made with `allow()`,
// `reject(code, msg)` or `modify(fields)`; `run()` does the rest:
//
// - subscribes to `{WORKER_SUBJECT_PREFIX}.{command}` in the queue group `openim-workers`
//   (one subscription per command you pass), on the servers of `NATS_URL`;
// - skips a message whose `X-Deadline-Unix-Ms` has passed (the gateway has already answered
//   OpenIM with its default: nobody waits for this reply);
// - replies to the message's reply subject with the decision as JSON, without copying the
//   request's headers onto the reply;
// - replies with an empty body and the headers `Nats-Service-Error` / `Nats-Service-Error-Code`
//   (400 when the body is not JSON or not the command's request, 500 when the handler throws),
//   so that the gateway answers its default at once instead of waiting for its timeout;
// - runs at most `WORKER_CONCURRENCY` handlers at a time;
// - prints `worker ready on ...` on stdout once the server has confirmed the subscriptions;
// - on SIGTERM or SIGINT drains: the server stops sending, messages already received are
//   still answered (up to 5 s), the replies are flushed, and `run()` resolves to 0.
//
//     import * as ow from "./openim-worker.js";
//     const decide = (request) =>
//       request.roleLevel === 100 ? ow.reject(5005, "no owner changes here") : ow.allow();
//     process.exit(await ow.run({ [ow.BEFORE_SET_GROUP_MEMBER_INFO]: decide }));
//
// For after-callbacks stored by the gateway in a JetStream stream (GATEWAY_AFTER_STREAM),
// `consumeAfterStream()` / `runAfterStream()` read them through a durable consumer: the
// handler gets the command, the parsed body and the headers; the message is acknowledged once
// it returns and delivered again when it throws:
//
//     process.exit(await ow.runAfterStream({
//       stream: "OPENIM_AFTER", durable: "member-info-log",
//       commands: ["callbackAfterSetGroupMemberInfoCommand"],
//       handler: (command, body, headers) => console.error(body.groupID, body.userID),
//     }));
//
// Only `serve()`, `run()` and the after-stream consumer talk to NATS; everything else is
// plain functions tested without a server.

// --- Names shared with the gateway -----------------------------------------------------------

export const DEFAULT_SUBJECT_PREFIX = "openim.callback";
export const QUEUE_GROUP = "openim-workers";
export const BEFORE_SET_GROUP_MEMBER_INFO = "callbackBeforeSetGroupMemberInfoCommand";

export const HEADER_REQUEST_ID = "X-Request-Id";
export const HEADER_DEADLINE_UNIX_MS = "X-Deadline-Unix-Ms";
export const HEADER_SERVICE_ERROR = "Nats-Service-Error";
export const HEADER_SERVICE_ERROR_CODE = "Nats-Service-Error-Code";

// --- Settings --------------------------------------------------------------------------------

export const NATS_URL = "NATS_URL";
export const WORKER_SUBJECT_PREFIX = "WORKER_SUBJECT_PREFIX";
export const WORKER_CONCURRENCY = "WORKER_CONCURRENCY";
export const WORKER_LOG_LEVEL = "WORKER_LOG_LEVEL";

export const DEFAULT_NATS_URL = "nats://127.0.0.1:4222";
export const DEFAULT_CONCURRENCY = 64;
export const MAX_CONCURRENCY = 10000;
const LOG_LEVELS = { debug: 10, info: 20, warn: 30, warning: 30, error: 40 };

// How often the client pings the server, so that a half-open connection is noticed quickly.
export const PING_INTERVAL_MS = 5000;
// How long shutdown waits for in-flight replies and the final flush.
export const SHUTDOWN_GRACE_MS = 5000;

export const EXIT_OK = 0;
export const EXIT_CANNOT_RUN = 1;
export const EXIT_BAD_SETTINGS = 2;

// The Node client speaks plain NATS and TLS; websockets need another package.
const NATS_SCHEMES = ["nats:", "tls:"];

/** A setting that cannot be used; `message` is the whole line to print before exiting 2. */
export class SettingsError extends Error {
  constructor(variable, value, rule) {
    super(`${variable}=${JSON.stringify(value)} is not valid: ${rule}`);
    this.name = "SettingsError";
    this.variable = variable;
  }
}

// Unicode's White_Space property, the set Rust's `char::is_whitespace` uses. JavaScript's `\s`
// differs from it (it also matches U+FEFF), so the rules and the subject check use this
// explicit set to decide exactly as the Rust worker does.
export const WHITESPACE_CHARS =
  "\t\n\u000b\u000c\r \u0085\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006" +
  "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000";
const WHITESPACE_RUN = /[\t\n\u000b\u000c\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+/u;

/** Trims and collapses every run of Unicode whitespace into one ASCII space. */
export function normaliseWhitespace(text) {
  return text
    .split(WHITESPACE_RUN)
    .filter((part) => part !== "")
    .join(" ");
}

/** Dot-separated non-empty tokens without whitespace, control characters or wildcards. */
export function isValidSubject(subject) {
  return (
    subject !== "" &&
    subject
      .split(".")
      .every(
        (token) =>
          token !== "" &&
          [...token].every(
            (c) => !WHITESPACE_CHARS.includes(c) && !/\p{Cc}/u.test(c) && c !== "*" && c !== ">",
          ),
      )
  );
}

/**
 * `value` with the user information of each URL hidden, as the gateway hides it: everything
 * between the scheme and the last `@` (a password may hold an unencoded `/`, `?`, `#` or `,`),
 * the user name kept when it is plainly one.
 */
export function redactNatsUrls(value) {
  const entries = value.split(",");
  const shown = [];
  let index = 0;
  while (index < entries.length) {
    // Entries without a scheme after a comma belong to the password before them when one of
    // them holds an `@`.
    let continuation = 0;
    for (let next = index + 1; next < entries.length && !entries[next].includes("://"); next++) {
      if (entries[next].includes("@")) continuation = next - index;
    }
    let url = entries.slice(index, index + continuation + 1).join(",");
    const start = url.includes("://") ? url.indexOf("://") + 3 : 0;
    const at = url.lastIndexOf("@");
    if (at >= start) {
      const userinfo = url.slice(start, at);
      const colon = userinfo.indexOf(":");
      const user = colon >= 0 ? userinfo.slice(0, colon) : "";
      const kept = colon >= 0 && !/[/?#]/.test(user) ? `${user}:***` : "***";
      url = url.slice(0, start) + kept + url.slice(at);
    }
    shown.push(url);
    index += continuation + 1;
  }
  return shown.join(",");
}

/**
 * `nats://h:p`, `tls://h:p` or a bare `host:port`; one or a comma-separated list. An error
 * shows the value with its passwords and tokens hidden.
 */
export function parseNatsUrls(value) {
  const rule =
    "must be a NATS URL such as nats://127.0.0.1:4222 (nats:// or tls://), or a comma-separated list of them";
  const shown = redactNatsUrls(value);
  return value.split(",").map((raw) => {
    const entry = raw.trim();
    const url = entry.includes("://") ? entry : `nats://${entry}`;
    let parsed;
    try {
      parsed = new URL(url);
    } catch {
      throw new SettingsError(NATS_URL, shown, rule);
    }
    if (entry === "" || !NATS_SCHEMES.includes(parsed.protocol) || parsed.hostname === "") {
      throw new SettingsError(NATS_URL, shown, rule);
    }
    if (!["", "/"].includes(parsed.pathname) || parsed.search !== "" || parsed.hash !== "") {
      // Most likely a password with an unencoded / ? or # that moved the host.
      throw new SettingsError(
        NATS_URL,
        shown,
        "must not have a path, query or fragment: a / ? # or @ in a password or token must be percent-encoded (%2F %3F %23 %40)",
      );
    }
    return url;
  });
}

/** An unsigned decimal integer in low..=high (a leading `+` allowed, no spaces). */
export function parseIntSetting(env, variable, fallback, low, high) {
  const value = env[variable];
  if (value === undefined) return fallback;
  if (/^\+?[0-9]+$/.test(value)) {
    const number = Number(value);
    if (number >= low && number <= high) return number;
  }
  throw new SettingsError(variable, value, `must be an integer in ${low}..=${high}`);
}

/** What every worker built on this module reads from the environment. Throws SettingsError. */
export function readSettings(env = process.env) {
  const natsServers = parseNatsUrls(env[NATS_URL] ?? DEFAULT_NATS_URL);
  const subjectPrefix = env[WORKER_SUBJECT_PREFIX] ?? DEFAULT_SUBJECT_PREFIX;
  if (!isValidSubject(subjectPrefix)) {
    throw new SettingsError(
      WORKER_SUBJECT_PREFIX,
      subjectPrefix,
      "must be a NATS subject without wildcards or whitespace, such as openim.callback",
    );
  }
  const concurrency = parseIntSetting(env, WORKER_CONCURRENCY, DEFAULT_CONCURRENCY, 1, MAX_CONCURRENCY);
  const levelName = (env[WORKER_LOG_LEVEL] ?? "").trim().toLowerCase() || "info";
  if (!(levelName in LOG_LEVELS)) {
    throw new SettingsError(WORKER_LOG_LEVEL, env[WORKER_LOG_LEVEL], "must be one of debug, info, warn, error");
  }
  return { natsServers, subjectPrefix, concurrency, logLevel: LOG_LEVELS[levelName] };
}

// --- Logs (stderr; stdout carries only the readiness line) -----------------------------------

export const log = {
  level: LOG_LEVELS.info,
  write(level, name, message) {
    if (LOG_LEVELS[level] >= this.level) {
      process.stderr.write(`${new Date().toISOString()} ${name.toUpperCase()} openim-worker: ${message}\n`);
    }
  },
  debug(message) {
    this.write("debug", "debug", message);
  },
  info(message) {
    this.write("info", "info", message);
  },
  warn(message) {
    this.write("warn", "warn", message);
  },
  error(message) {
    this.write("error", "error", message);
  },
};

// --- Decisions -------------------------------------------------------------------------------

export const INT32_MIN = -(2 ** 31);
export const INT32_MAX = 2 ** 31 - 1;
export const MIN_REJECT_ERR_CODE = 100;
const COMMON_FIELDS = ["actionCode", "errCode", "errMsg", "errDlt", "nextCode"];

/** An OpenIM answer: the five common fields plus the command's own fields to write. */
export class Decision {
  constructor({ actionCode = 0, errCode = 0, errMsg = "", errDlt = "", nextCode = 0, fields = {} } = {}) {
    this.actionCode = actionCode;
    this.errCode = errCode;
    this.errMsg = errMsg;
    this.errDlt = errDlt;
    this.nextCode = nextCode;
    this.fields = Object.freeze({ ...fields });
    Object.freeze(this);
  }

  get isReject() {
    return this.actionCode === 0 && this.nextCode === 1;
  }

  toObject() {
    const { actionCode, errCode, errMsg, errDlt, nextCode } = this;
    return { actionCode, errCode, errMsg, errDlt, nextCode, ...this.fields };
  }

  toJSON() {
    return this.toObject();
  }
}

/** Let the operation through unchanged. */
export function allow() {
  return new Decision();
}

/** Refuse the operation. OpenIM shows `errCode` (at least 100) and `errMsg` to the user. */
export function reject(errCode, errMsg, errDlt = "") {
  if (!Number.isInteger(errCode) || errCode < MIN_REJECT_ERR_CODE || errCode > INT32_MAX) {
    throw new RangeError(`a reject's errCode must be an integer in 100..=${INT32_MAX}`);
  }
  if (typeof errMsg !== "string" || typeof errDlt !== "string") {
    throw new TypeError("errMsg and errDlt must be strings");
  }
  return new Decision({ errCode, errMsg, errDlt, nextCode: 1 });
}

/**
 * Allow, writing these fields (OpenIM's JSON names, e.g. `modify({ nickName: "Bob" })`).
 * A field given as null or undefined is left out: absent means "keep the request's value",
 * and setting a field the request had `null` would add a change nobody asked for.
 */
export function modify(fields) {
  const common = Object.keys(fields).filter((name) =>
    COMMON_FIELDS.some((field) => field.toLowerCase() === name.toLowerCase()),
  );
  if (common.length) {
    throw new Error(`modify() sets the command's own fields, not ${common.join(", ")}`);
  }
  const kept = Object.fromEntries(Object.entries(fields).filter(([, value]) => value != null));
  return new Decision({ fields: kept });
}

// --- Requests --------------------------------------------------------------------------------

/** The body is not the command's request. The message goes in a header: never quote the body. */
export class BadRequest extends Error {
  constructor(message) {
    super(message);
    this.name = "BadRequest";
  }
}

const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** Strict JSON as OpenIM writes it: UTF-8, nothing after the value. */
export function parseJson(payload) {
  try {
    const text = typeof payload === "string" ? payload : utf8.decode(payload);
    return JSON.parse(text);
  } catch {
    throw new BadRequest("body is not valid JSON");
  }
}

const KIND_NAMES = { string: "a string", int32: "a 32-bit integer" };

function field(obj, command, name, kind, required) {
  if (!Object.hasOwn(obj, name)) {
    if (required) throw new BadRequest(`body is not a ${command} request (missing ${name})`);
    return null;
  }
  const value = obj[name];
  if (value === null && !required) return null;
  if (kind === "string" && typeof value === "string") return value;
  // JSON.parse reads 60.0 as 60, so unlike the Rust worker this accepts an integral float.
  if (kind === "int32" && Number.isInteger(value) && value >= INT32_MIN && value <= INT32_MAX) return value;
  throw new BadRequest(`body is not a ${command} request (${name} must be ${KIND_NAMES[kind]})`);
}

/**
 * callbackBeforeSetGroupMemberInfoCommand, with OpenIM's field names. `null` means "not
 * changing"; `""` is a value (clearing the nickname or the avatar).
 */
export function parseSetGroupMemberInfoRequest(obj) {
  const command = BEFORE_SET_GROUP_MEMBER_INFO;
  if (obj === null || typeof obj !== "object" || Array.isArray(obj)) {
    throw new BadRequest(`body is not a ${command} request (not a JSON object)`);
  }
  return Object.freeze({
    callbackCommand: field(obj, command, "callbackCommand", "string", true),
    groupID: field(obj, command, "groupID", "string", true),
    userID: field(obj, command, "userID", "string", true),
    nickName: field(obj, command, "nickName", "string", false),
    faceURL: field(obj, command, "faceURL", "string", false),
    roleLevel: field(obj, command, "roleLevel", "int32", false),
    ex: field(obj, command, "ex", "string", false),
  });
}

/** The parser for commands without a typed request: any JSON object. */
export function jsonObject(obj) {
  if (obj === null || typeof obj !== "object" || Array.isArray(obj)) {
    throw new BadRequest("body is not a JSON object");
  }
  return obj;
}

/** Typed requests per command; other commands get the JSON object. */
export const REQUEST_TYPES = { [BEFORE_SET_GROUP_MEMBER_INFO]: parseSetGroupMemberInfoRequest };

// --- One message, without NATS ---------------------------------------------------------------

const encoder = new TextEncoder();

export function serviceError(code, description) {
  // A header value cannot hold a line break.
  const oneLine = description.replace(/[\r\n]+/g, " ");
  return {
    body: new Uint8Array(0),
    headers: { [HEADER_SERVICE_ERROR]: oneLine, [HEADER_SERVICE_ERROR_CODE]: code },
    decision: null,
  };
}

/** Parses the body, runs the handler and turns the outcome into `{ body, headers, decision }`. */
export async function respond(handler, parse, payload) {
  let request;
  try {
    request = parse(parseJson(payload));
  } catch (error) {
    if (error instanceof BadRequest) return serviceError("400", `bad request: ${error.message}`);
    log.error(`the request parser failed: ${error?.stack ?? error}`);
    return serviceError("500", `internal error: the request parser failed (${error?.name ?? typeof error})`);
  }
  try {
    const decision = await handler(request);
    if (!(decision instanceof Decision)) {
      throw new TypeError(`the handler returned ${typeof decision}, not a Decision`);
    }
    return { body: encoder.encode(JSON.stringify(decision)), headers: null, decision };
  } catch (error) {
    log.error(`the handler failed: ${error?.stack ?? error}`);
    return serviceError("500", `internal error: the handler failed (${error?.name ?? typeof error})`);
  }
}

/**
 * The request's deadline (a BigInt of Unix ms), or null when absent or malformed: a malformed
 * one is ignored rather than trusted, since dropping a request somebody waits for is worse.
 */
export function deadlineUnixMs(value) {
  if (value === undefined || value === null || value === "") return null;
  const trimmed = value.trim();
  if (/^\+?[0-9]+$/.test(trimmed)) {
    const deadline = BigInt(trimmed.replace(/^\+/, ""));
    if (deadline < 2n ** 64n) return deadline;
  }
  log.debug(`ignoring a malformed ${HEADER_DEADLINE_UNIX_MS}`);
  return null;
}

export function nowUnixMs() {
  return BigInt(Date.now());
}

/** Past only once the clock is after the deadline (the deadline millisecond is on time). */
export function isPast(deadline, now) {
  return now > deadline;
}

// --- The NATS loop ---------------------------------------------------------------------------

/** A counting semaphore: at most `size` holders, the others wait in order. */
export class Semaphore {
  constructor(size) {
    this.free = size;
    this.waiting = [];
  }

  acquire() {
    if (this.free > 0) {
      this.free -= 1;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  release() {
    const next = this.waiting.shift();
    if (next) next();
    else this.free += 1;
  }
}

function headerOf(msg, name) {
  const headers = msg.headers;
  return headers && headers.has(name) ? headers.get(name) : undefined;
}

/**
 * Subscriptions and in-flight messages of one connection. `client` needs `publish`,
 * `subscribe` and `flush` as in the `nats` package; tests pass a fake. `makeHeaders` turns a
 * plain object into the client's header type.
 */
export class Worker {
  constructor(client, settings, handlers, { parsers = {}, makeHeaders = (h) => h } = {}) {
    if (Object.keys(handlers).length === 0) throw new Error("give at least one command and its handler");
    this.client = client;
    this.settings = settings;
    this.handlers = { ...handlers };
    this.parsers = Object.fromEntries(
      Object.keys(handlers).map((command) => [command, parsers[command] ?? REQUEST_TYPES[command] ?? jsonObject]),
    );
    this.makeHeaders = makeHeaders;
    this.slots = new Semaphore(settings.concurrency);
    this.inFlight = new Set();
    this.loops = [];
    this.subscriptions = [];
  }

  subject(command) {
    return `${this.settings.subjectPrefix}.${command}`;
  }

  /**
   * Joins the queue group on every command's subject and waits for the server to have them:
   * `flush` is a PING/PONG round trip, so the server has processed the SUBs.
   */
  async subscribe() {
    for (const command of Object.keys(this.handlers)) {
      const subscription = this.client.subscribe(this.subject(command), { queue: QUEUE_GROUP });
      this.subscriptions.push(subscription);
      this.loops.push(
        this.consume(command, subscription).catch((error) =>
          log.error(`the subscription to ${this.subject(command)} failed: ${error?.message ?? error}`),
        ),
      );
    }
    await this.client.flush();
  }

  async consume(command, subscription) {
    for await (const msg of subscription) {
      await this.dispatch(command, msg);
    }
  }

  /**
   * Waits for a free slot, then handles the message without waiting for it. Waiting here
   * stops reading the subscription: that is the back-pressure.
   */
  async dispatch(command, msg) {
    await this.slots.acquire();
    const task = this.handle(command, msg)
      .catch((error) => log.error(`a message failed: ${error?.stack ?? error}`))
      .finally(() => {
        this.slots.release();
        this.inFlight.delete(task);
      });
    this.inFlight.add(task);
  }

  /** Answers one message, or deliberately does not (no reply subject, deadline passed). */
  async handle(command, msg) {
    const requestId = headerOf(msg, HEADER_REQUEST_ID) ?? "-";
    if (!msg.reply) {
      log.warn(`request_id=${requestId} message without a reply subject on ${msg.subject}: skipped`);
      return;
    }
    const deadline = deadlineUnixMs(headerOf(msg, HEADER_DEADLINE_UNIX_MS));
    if (deadline !== null) {
      const now = nowUnixMs();
      if (isPast(deadline, now)) {
        log.info(
          `request_id=${requestId} late_by_ms=${now - deadline} deadline passed: nobody waits for this answer, not replying`,
        );
        return;
      }
    }
    const reply = await respond(this.handlers[command], this.parsers[command], msg.data);
    if (reply.headers) {
      log.warn(`request_id=${requestId} ${reply.headers[HEADER_SERVICE_ERROR]}`);
    } else {
      log.debug(
        `request_id=${requestId} reject=${reply.decision.isReject} err_code=${reply.decision.errCode} ` +
          `modified_fields=${Object.keys(reply.decision.fields).sort().join(",")}`,
      );
    }
    // Only the service error headers, never the request's.
    const options = reply.headers ? { headers: this.makeHeaders(reply.headers) } : undefined;
    this.client.publish(msg.reply, reply.body, options);
  }

  /** Stops new messages, answers those already received and flushes; true when all finished
   * within `graceMs`. */
  async drain(graceMs = SHUTDOWN_GRACE_MS) {
    const finish = async () => {
      for (const subscription of this.subscriptions) {
        try {
          await subscription.drain();
        } catch (error) {
          log.warn(`cannot drain a subscription: ${error?.message ?? error}`);
        }
      }
      await Promise.allSettled(this.loops);
      while (this.inFlight.size) await Promise.allSettled([...this.inFlight]);
      await this.client.flush();
      return true;
    };
    let timer;
    const timeout = new Promise((resolve) => {
      timer = setTimeout(() => resolve(false), graceMs);
    });
    const finished = await Promise.race([finish(), timeout]);
    clearTimeout(timer);
    if (!finished) log.warn(`shutdown grace elapsed; abandoning ${this.inFlight.size} unfinished replies`);
    return finished;
  }
}

/** A promise resolved with "signal" on the first SIGTERM or SIGINT. */
function stopOnSignals() {
  return new Promise((resolve) => {
    for (const signal of ["SIGTERM", "SIGINT"]) process.once(signal, () => resolve("signal"));
  });
}

/**
 * Connects, retrying until a server answers, and logs the connection's changes. Resolves to
 * `{ client, nats }`, or to the exit code when `stopped` (a signal) came first or the
 * connection failed.
 */
async function connectUntilStopped(settings, name, stopped, whileDisconnected = "callbacks get the gateway's default") {
  const nats = await import("nats");
  // waitOnFirstConnect with unlimited attempts keeps trying until a server answers.
  const connecting = nats.connect({
    servers: settings.natsServers,
    name,
    pingInterval: PING_INTERVAL_MS,
    maxReconnectAttempts: -1,
    waitOnFirstConnect: true,
    reconnectTimeWait: 1000,
  });
  const first = await Promise.race([connecting.then((client) => ({ client }), (error) => ({ error })), stopped]);
  if (first === "signal") {
    log.info("shut down before the worker was ready");
    connecting.then((client) => client.close()).catch(() => {});
    return EXIT_OK;
  }
  if (first.error) {
    log.error(`cannot connect to NATS: ${first.error.message}`);
    return EXIT_CANNOT_RUN;
  }
  const client = first.client;
  (async () => {
    for await (const status of client.status()) {
      if (status.type === "disconnect") {
        log.warn(`disconnected from NATS: ${whileDisconnected} until reconnected`);
      } else if (status.type === "reconnect") {
        log.info("reconnected to NATS");
      } else if (status.type === "error" || status.type === "slowConsumer") {
        log.warn(`nats: ${status.type} ${status.data ?? ""}`);
      }
    }
  })().catch(() => {});
  return { client, nats };
}

/**
 * Connects (retrying until a server answers), subscribes, prints the readiness line, answers
 * until SIGTERM/SIGINT, then drains. Resolves to the exit code.
 */
export async function serve(settings, handlers, { name = "openim-worker-node", parsers = {} } = {}) {
  const stopped = stopOnSignals();
  const connected = await connectUntilStopped(settings, name, stopped);
  if (typeof connected === "number") return connected;
  const { client, nats } = connected;

  const makeHeaders = (plain) => {
    const headers = nats.headers();
    for (const [key, value] of Object.entries(plain)) headers.set(key, value);
    return headers;
  };
  const worker = new Worker(client, settings, handlers, { parsers, makeHeaders });
  try {
    await worker.subscribe();
  } catch (error) {
    log.error(`cannot subscribe: ${error?.message ?? error}`);
    await client.close().catch(() => {});
    return EXIT_CANNOT_RUN;
  }
  const subjects = Object.keys(handlers).map((command) => worker.subject(command));
  process.stdout.write(`worker ready on ${subjects.join(", ")} (queue ${QUEUE_GROUP})\n`);

  const outcome = await Promise.race([stopped, client.closed().then(() => "closed")]);
  if (outcome === "closed") {
    log.error("the connection closed without a shutdown");
    return EXIT_CANNOT_RUN;
  }
  log.info("shutting down: draining the subscriptions");
  if (await worker.drain()) log.info("drained, all replies flushed");
  await client.close().catch(() => {});
  return EXIT_OK;
}

// --- After-callbacks from a JetStream stream -------------------------------------------------
//
// With GATEWAY_AFTER_STREAM=<name> the gateway stores every after-callback in that stream
// before acknowledging OpenIM. A durable consumer remembers, on the server, what this worker
// has acknowledged, so a worker that was down reads what it missed when it comes back.

export const HEADER_CALLBACK_COMMAND = "X-Callback-Command";

// How long the server waits for an acknowledgement before delivering a message again. While
// a handler runs, the module tells the server it is still working every half of this.
export const DEFAULT_ACK_WAIT_MS = 30000;
// After a handler threw, the message comes back after this delay.
export const DEFAULT_NAK_DELAY_MS = 1000;
// How long one pull request waits for messages (the client's minimum); also the longest a
// stop waits for it.
export const DEFAULT_FETCH_WAIT_MS = 1000;
// How long an acknowledgement waits for the server to confirm it.
export const ACK_TIMEOUT_MS = 5000;

/** A stream or consumer name: not empty, no whitespace, control characters, `.`, `*`, `>`,
 * `/` or `\`. */
export function isValidName(name) {
  return (
    typeof name === "string" &&
    name !== "" &&
    [...name].every((c) => !WHITESPACE_CHARS.includes(c) && !/\p{Cc}/u.test(c) && !".*>/\\".includes(c))
  );
}

/** A stream or consumer name from the environment. Throws SettingsError. */
export function parseNameSetting(env, variable, fallback) {
  const value = env[variable] ?? fallback;
  if (!isValidName(value)) {
    throw new SettingsError(
      variable,
      value,
      "must be a stream or consumer name: not empty, no whitespace, '.', '*', '>', '/' or '\\'",
    );
  }
  return value;
}

/** The filter subjects for these commands (a name or a list); empty for all. */
export function afterSubjects(subjectPrefix, commands) {
  if (commands === undefined || commands === null) return [];
  const list = typeof commands === "string" ? [commands] : [...commands];
  const subjects = list.map((command) => `${subjectPrefix}.${command}`);
  if (subjects.length === 0 || !subjects.every(isValidSubject)) {
    throw new Error(`commands must be command names, not ${JSON.stringify(list)}`);
  }
  return subjects;
}

/** The command: the X-Callback-Command header, else the subject's last part. */
export function afterCommand(subject, headers, subjectPrefix) {
  const command = headers[HEADER_CALLBACK_COMMAND];
  if (command) return command;
  const prefix = `${subjectPrefix}.`;
  return subject.startsWith(prefix) ? subject.slice(prefix.length) : subject.split(".").pop();
}

/** The message's headers as a plain object (the first value of each). */
export function plainHeaders(headers) {
  const plain = {};
  if (headers) for (const key of headers.keys()) plain[key] = headers.get(key);
  return plain;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * A durable pull consumer on the gateway's after-callback stream. `client` is a connected
 * client of the `nats` package. See `consumeAfterStream`.
 */
export class AfterStreamConsumer {
  constructor(
    client,
    {
      stream,
      durable,
      handler,
      commands = null,
      subjectPrefix = DEFAULT_SUBJECT_PREFIX,
      concurrency = DEFAULT_CONCURRENCY,
      parse = parseJson,
      ackWaitMs = DEFAULT_ACK_WAIT_MS,
      nakDelayMs = DEFAULT_NAK_DELAY_MS,
      fetchWaitMs = DEFAULT_FETCH_WAIT_MS,
      maxDeliver = null,
      graceMs = SHUTDOWN_GRACE_MS,
    },
  ) {
    for (const [what, name] of [
      ["stream", stream],
      ["durable", durable],
    ]) {
      if (!isValidName(name)) {
        throw new Error(`${what} ${JSON.stringify(name)} is not a valid name (no whitespace, '.', '*', '>', '/' or '\\')`);
      }
    }
    if (typeof handler !== "function") throw new TypeError("handler must be a function");
    if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > MAX_CONCURRENCY) {
      throw new RangeError(`concurrency must be an integer in 1..=${MAX_CONCURRENCY}`);
    }
    this.client = client;
    this.stream = stream;
    this.durable = durable;
    this.handler = handler;
    this.subjectPrefix = subjectPrefix;
    this.subjects = afterSubjects(subjectPrefix, commands);
    this.concurrency = concurrency;
    this.parse = parse;
    this.ackWaitMs = ackWaitMs;
    this.nakDelayMs = nakDelayMs;
    this.fetchWaitMs = Math.max(fetchWaitMs, 1000);
    this.maxDeliver = maxDeliver;
    this.graceMs = graceMs;
    // A message delivered twice counts twice.
    this.stats = { acked: 0, retried: 0, refused: 0, unconfirmed: 0, abandoned: 0 };
    this.free = concurrency;
    this.wakeUp = null;
    this.inFlight = new Set();
    this.consumer = null;
  }

  consumerConfig() {
    const config = {
      durable_name: this.durable,
      ack_policy: "explicit",
      deliver_policy: "all",
      ack_wait: this.ackWaitMs * 1_000_000, // nanoseconds
    };
    if (this.subjects.length === 1) config.filter_subject = this.subjects[0];
    else if (this.subjects.length > 1) config.filter_subjects = [...this.subjects];
    if (this.maxDeliver !== null) config.max_deliver = this.maxDeliver;
    return config;
  }

  /** Creates the durable consumer, or updates it to this configuration. Throws when the
   * stream does not exist or a subject is not in it. */
  async open() {
    const manager = await this.client.jetstreamManager();
    await manager.consumers.add(this.stream, this.consumerConfig());
    this.consumer = await this.client.jetstream().consumers.get(this.stream, this.durable);
  }

  /** Pulls and handles messages until `signal` aborts, then lets the running handlers finish
   * (up to `graceMs`), acknowledges them and resolves to the counts. */
  async consume(signal) {
    if (this.consumer === null) await this.open();
    const stopped = new Promise((resolve) => {
      if (signal?.aborted) resolve();
      signal?.addEventListener("abort", () => resolve(), { once: true });
    });
    const isStopped = () => signal?.aborted === true;
    while (!isStopped()) {
      if (this.free === 0) {
        await Promise.race([new Promise((resolve) => (this.wakeUp = resolve)), stopped]);
        continue;
      }
      // Ask for exactly as many messages as there are free handlers: nothing waits in the
      // client while its ack timer runs.
      const batch = this.free;
      this.free = 0;
      let received = 0;
      try {
        const messages = await this.consumer.fetch({ max_messages: batch, expires: this.fetchWaitMs });
        for await (const msg of messages) {
          received += 1;
          this.start(msg);
        }
      } catch (error) {
        log.warn(`cannot pull from stream ${this.stream} as ${this.durable}: ${error?.message ?? error}`);
        await Promise.race([sleep(1000), stopped]);
      }
      this.free += batch - received;
    }
    await this.drain();
    return this.stats;
  }

  start(msg) {
    const task = this.handle(msg)
      .catch((error) => log.error(`a message failed: ${error?.stack ?? error}`))
      .finally(() => {
        this.inFlight.delete(task);
        this.free += 1;
        this.wakeUp?.();
      });
    this.inFlight.add(task);
  }

  async drain() {
    if (this.inFlight.size) {
      log.info(`stopping: waiting for ${this.inFlight.size} running handler(s)`);
      let timer;
      const finished = await Promise.race([
        Promise.allSettled([...this.inFlight]).then(() => true),
        new Promise((resolve) => {
          timer = setTimeout(() => resolve(false), this.graceMs);
        }),
      ]);
      clearTimeout(timer);
      if (!finished) {
        log.warn(`shutdown grace elapsed; ${this.inFlight.size} message(s) not acknowledged will be delivered again`);
        this.stats.abandoned += this.inFlight.size;
      }
    }
    await this.client.flush().catch((error) => log.warn(`cannot flush: ${error?.message ?? error}`));
  }

  async handle(msg) {
    const headers = plainHeaders(msg.headers);
    const requestId = headers[HEADER_REQUEST_ID] ?? "-";
    const command = afterCommand(msg.subject, headers, this.subjectPrefix);
    let body;
    try {
      body = this.parse(msg.data);
      const keepAlive = setInterval(() => msg.working(), Math.max(this.ackWaitMs / 2, 1));
      try {
        await this.handler(command, body, headers);
      } finally {
        clearInterval(keepAlive);
      }
    } catch (error) {
      if (error instanceof BadRequest) {
        log.warn(`request_id=${requestId} ${error.message}: terminated, it will not be delivered again`);
        msg.term();
        this.stats.refused += 1;
      } else {
        log.error(
          `request_id=${requestId} the handler failed for ${command}; delivered again in ${this.nakDelayMs} ms: ` +
            `${error?.stack ?? error}`,
        );
        msg.nak(this.nakDelayMs);
        this.stats.retried += 1;
      }
      return;
    }
    try {
      await msg.ackAck({ timeout: ACK_TIMEOUT_MS });
      this.stats.acked += 1;
    } catch (error) {
      log.warn(`request_id=${requestId} the ack was not confirmed (${error?.message ?? error}): the message may be delivered again`);
      this.stats.unconfirmed += 1;
    }
  }
}

/**
 * Handles the after-callbacks stored in the gateway's stream `stream` through the durable
 * consumer `durable`, until `signal` (an AbortSignal) aborts; resolves to the counts
 * `{ acked, retried, refused, unconfirmed, abandoned }`.
 *
 * - `handler(command, body, headers)` (may be async): `command` from `X-Callback-Command`,
 *   `body` the parsed JSON (or what `parse` returns for the raw bytes), `headers` a plain
 *   object.
 * - The message is acknowledged once the handler returns (the server confirms the ack); when
 *   it throws, it is negatively acknowledged and delivered again after `nakDelayMs`; when
 *   `parse` or the handler throws `BadRequest`, it is terminated (never delivered again).
 * - `commands`: a command name or a list of them, to read only those; all by default.
 * - At most `concurrency` handlers run at a time, and no more messages are pulled than there
 *   are free handlers. Order is the stream's, except for messages delivered again.
 * - Created when missing, the consumer starts at the oldest message the stream holds; an
 *   existing one continues after what it acknowledged. Several workers may share it.
 * - `onReady()` is called once the consumer exists. On abort, no more messages are pulled,
 *   the running handlers get `graceMs` to finish and are acknowledged, then it resolves.
 *
 * Other options: `subjectPrefix`, `parse`, `ackWaitMs`, `nakDelayMs`, `fetchWaitMs`,
 * `maxDeliver`, `graceMs`.
 */
export async function consumeAfterStream(client, { signal, onReady, ...options }) {
  const consumer = new AfterStreamConsumer(client, options);
  await consumer.open();
  onReady?.(consumer);
  return consumer.consume(signal);
}

/**
 * Connects, creates the durable consumer, prints `worker ready on stream ...`, handles
 * messages until SIGTERM/SIGINT, then finishes the running ones. Resolves to the exit code.
 */
export async function serveAfterStream(settings, { name = "openim-after-worker-node", ...options }) {
  const stopped = stopOnSignals();
  const connected = await connectUntilStopped(settings, name, stopped, "after-callbacks wait in the stream");
  if (typeof connected === "number") return connected;
  const { client } = connected;
  let consumer;
  try {
    consumer = new AfterStreamConsumer(client, {
      subjectPrefix: settings.subjectPrefix,
      concurrency: settings.concurrency,
      ...options,
    });
    await consumer.open();
  } catch (error) {
    log.error(`cannot consume stream ${options.stream} as ${options.durable}: ${error?.message ?? error}`);
    await client.close().catch(() => {});
    return EXIT_CANNOT_RUN;
  }
  process.stdout.write(
    `worker ready on stream ${consumer.stream} as durable ${consumer.durable} ` +
      `(${consumer.subjects.join(", ") || "all subjects"})\n`,
  );
  const stop = new AbortController();
  stopped.then(() => stop.abort());
  const consuming = consumer.consume(stop.signal);
  const outcome = await Promise.race([consuming, client.closed().then(() => "closed")]);
  if (outcome === "closed") {
    log.error("the connection closed without a shutdown");
    return EXIT_CANNOT_RUN;
  }
  const s = outcome;
  log.info(
    `stopped: ${s.acked} acknowledged, ${s.retried} to retry, ${s.refused} refused, ` +
      `${s.unconfirmed} unconfirmed, ${s.abandoned} abandoned`,
  );
  await client.close().catch(() => {});
  return EXIT_OK;
}

/**
 * Reads the settings, runs the worker until SIGTERM/SIGINT and resolves to the exit code:
 * 0 after a signal, 1 when it cannot run, 2 for a bad setting (one line on stderr).
 * Pass it to `process.exit()`: after a signal during the first connection attempt, the
 * client's retry timer would otherwise keep Node running.
 */
export async function run(handlers, { name = "openim-worker-node", parsers = {}, env = process.env } = {}) {
  const settings = startup(env);
  return settings === null ? EXIT_BAD_SETTINGS : serve(settings, handlers, { name, parsers });
}

/**
 * What both programs do first: read the settings (null after printing the one-line error of a
 * bad one) and set up logging.
 */
function startup(env) {
  let settings;
  try {
    settings = readSettings(env);
  } catch (error) {
    if (!(error instanceof SettingsError)) throw error;
    process.stderr.write(`${error.message}\n`);
    return null;
  }
  log.level = settings.logLevel;
  log.info(`connecting to NATS (${settings.natsServers.length} server(s)), concurrency ${settings.concurrency}`);
  return settings;
}

/**
 * `consumeAfterStream` as a program: reads the settings (NATS_URL, WORKER_SUBJECT_PREFIX,
 * WORKER_CONCURRENCY, WORKER_LOG_LEVEL), prints `worker ready on stream ...` once the
 * consumer exists, stops cleanly on SIGTERM/SIGINT. Resolves to the exit code: 0 after a
 * signal, 1 when it cannot run, 2 for a bad setting. Pass it to `process.exit()`.
 */
export async function runAfterStream({ name = "openim-after-worker-node", env = process.env, ...options }) {
  const settings = startup(env);
  return settings === null ? EXIT_BAD_SETTINGS : serveAfterStream(settings, { name, ...options });
}
