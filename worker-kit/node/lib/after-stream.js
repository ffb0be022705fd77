"use strict";

// After-callbacks stored by the gateway in a JetStream stream (GATEWAY_AFTER_STREAM), read
// through a durable pull consumer: acknowledged once the handler returns, delivered again when
// it throws, terminated when the body is refused.

const {
  DEFAULT_SUBJECT_PREFIX,
  HEADER_REQUEST_ID,
  SHUTDOWN_GRACE_MS,
  EXIT_OK,
  EXIT_CANNOT_RUN,
} = require("./names.js");
const { DEFAULT_CONCURRENCY, MAX_CONCURRENCY, isValidName, isValidSubject } = require("./settings.js");
const { log } = require("./log.js");
const { BadRequest, parseJson } = require("./handler.js");
const { stopOnSignals } = require("./shutdown.js");
const { connectUntilStopped } = require("./connect.js");

// --- After-callbacks from a JetStream stream -------------------------------------------------
//
// With GATEWAY_AFTER_STREAM=<name> the gateway stores every after-callback in that stream
// before acknowledging OpenIM. A durable consumer remembers, on the server, what this worker
// has acknowledged, so a worker that was down reads what it missed when it comes back.

const HEADER_CALLBACK_COMMAND = "X-Callback-Command";

// How long the server waits for an acknowledgement before delivering a message again. While
// a handler runs, the module tells the server it is still working every half of this.
const DEFAULT_ACK_WAIT_MS = 30000;
// After a handler threw, the message comes back after this delay.
const DEFAULT_NAK_DELAY_MS = 1000;
// How long one pull request waits for messages (the client's minimum); also the longest a
// stop waits for it.
const DEFAULT_FETCH_WAIT_MS = 1000;
// How long an acknowledgement waits for the server to confirm it.
const ACK_TIMEOUT_MS = 5000;


/** The filter subjects for these commands (a name or a list); empty for all. */
function afterSubjects(subjectPrefix, commands) {
  if (commands === undefined || commands === null) return [];
  const list = typeof commands === "string" ? [commands] : [...commands];
  const subjects = list.map((command) => `${subjectPrefix}.${command}`);
  if (subjects.length === 0 || !subjects.every(isValidSubject)) {
    throw new Error(`commands must be command names, not ${JSON.stringify(list)}`);
  }
  return subjects;
}

/** The command: the X-Callback-Command header, else the subject's last part. */
function afterCommand(subject, headers, subjectPrefix) {
  const command = headers[HEADER_CALLBACK_COMMAND];
  if (command) return command;
  const prefix = `${subjectPrefix}.`;
  return subject.startsWith(prefix) ? subject.slice(prefix.length) : subject.split(".").pop();
}

/** The message's headers as a plain object (the first value of each). */
function plainHeaders(headers) {
  const plain = {};
  if (headers) for (const key of headers.keys()) plain[key] = headers.get(key);
  return plain;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * A durable pull consumer on the gateway's after-callback stream. `client` is a connected
 * client of the `nats` package. See `consumeAfterStream`.
 */
class AfterStreamConsumer {
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
async function consumeAfterStream(client, { signal, onReady, ...options }) {
  const consumer = new AfterStreamConsumer(client, options);
  await consumer.open();
  onReady?.(consumer);
  return consumer.consume(signal);
}

/**
 * Connects, creates the durable consumer, prints `worker ready on stream ...`, handles
 * messages until SIGTERM/SIGINT, then finishes the running ones. Resolves to the exit code.
 */
async function serveAfterStream(settings, { name = "openim-after-worker-node", ...options }) {
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

module.exports = {
  HEADER_CALLBACK_COMMAND,
  DEFAULT_ACK_WAIT_MS,
  DEFAULT_NAK_DELAY_MS,
  DEFAULT_FETCH_WAIT_MS,
  ACK_TIMEOUT_MS,
  afterSubjects,
  afterCommand,
  plainHeaders,
  AfterStreamConsumer,
  consumeAfterStream,
  serveAfterStream,
};
