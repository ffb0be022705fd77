"use strict";

// Before-callbacks on NATS: one subscription per command in the queue group openim-workers,
// at most WORKER_CONCURRENCY handlers at a time (the subscription is not read further while
// all are busy), late messages skipped, and a drain on shutdown that answers everything
// already received (up to SHUTDOWN_GRACE_MS).

const {
  QUEUE_GROUP,
  HEADER_REQUEST_ID,
  HEADER_DEADLINE_UNIX_MS,
  HEADER_SERVICE_ERROR,
  HEADER_SERVICE_ERROR_CODE,
  SHUTDOWN_GRACE_MS,
  EXIT_OK,
  EXIT_CANNOT_RUN,
} = require("./names.js");
const { log } = require("./log.js");
const { REQUEST_TYPES, jsonObject, respond } = require("./handler.js");
const { deadlineUnixMs, nowUnixMs, isPast } = require("./deadline.js");
const { stopOnSignals } = require("./shutdown.js");
const { connectUntilStopped } = require("./connect.js");
const { startExporting, flushTraces, startRequestSpan, endRequestSpan } = require("./trace.js");

// --- The NATS loop ---------------------------------------------------------------------------

/** A counting semaphore: at most `size` holders, the others wait in order. */
class Semaphore {
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
class Worker {
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
    const span = startRequestSpan(msg.headers, command, msg.subject);
    const reply = await respond(this.handlers[command], this.parsers[command], msg.data);
    endRequestSpan(span, reply.headers?.[HEADER_SERVICE_ERROR_CODE]);
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

/**
 * Connects (retrying until a server answers), subscribes, prints the readiness line, answers
 * until SIGTERM/SIGINT, then drains. Resolves to the exit code.
 */
async function serve(settings, handlers, { name = "openim-worker-node", parsers = {} } = {}) {
  const stopped = stopOnSignals();
  const connected = await connectUntilStopped(settings, name, stopped);
  if (typeof connected === "number") return connected;
  const { client, nats } = connected;

  const makeHeaders = (plain) => {
    const headers = nats.headers();
    for (const [key, value] of Object.entries(plain)) headers.set(key, value);
    return headers;
  };
  startExporting(name);
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
  await flushTraces();
  return EXIT_OK;
}

module.exports = {
  Semaphore,
  Worker,
  serve,
};
