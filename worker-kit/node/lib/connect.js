"use strict";

// The connection to NATS: retried until a server answers, its failures logged without
// flooding the log.

const { readFileSync } = require("node:fs");
const { createRequire } = require("node:module");
const path = require("node:path");

const { EXIT_OK, EXIT_CANNOT_RUN, PING_INTERVAL_MS } = require("./names.js");
const { redactNatsUrls } = require("./settings.js");
const { log } = require("./log.js");

// A failure with the same cause is logged at most once in this interval.
const CONNECT_LOG_INTERVAL_MS = 30000;
// The pause between two connection attempts.
const RECONNECT_WAIT_MS = 1000;

/**
 * Says whether a message with this key may be logged now: once per key per `intervalMs`,
 * counting what it held back, so a server down for an hour gives a line every 30 s rather
 * than one a second.
 */
class LogThrottle {
  constructor(intervalMs = CONNECT_LOG_INTERVAL_MS, now = () => Date.now()) {
    this.intervalMs = intervalMs;
    this.now = now;
    this.last = new Map();
  }

  /** null when `key` was logged less than `intervalMs` ago; else the number of times it was
   * held back since (0 the first time). */
  admit(key) {
    const now = this.now();
    const entry = this.last.get(key);
    if (entry && now - entry.at < this.intervalMs) {
      entry.held += 1;
      return null;
    }
    this.last.set(key, { at: now, held: 0 });
    return entry ? entry.held : 0;
  }
}

/** The cause of a connection error, the same for every attempt that fails the same way. */
function failureCause(error) {
  return `${error?.code ?? ""} ${error?.message ?? error}`.trim();
}

/** Errors that retrying cannot fix: the server refused the credentials. */
function isPermanent(error) {
  return /AUTH/i.test(String(error?.code ?? ""));
}

/**
 * The `nats` client package. Installed from a registry or with `--install-links`, the kit has
 * it beside itself; linked by `npm install <directory>` (a symlink, whose dependencies npm
 * does not install), it has no node_modules of its own, so the program's `nats` is used.
 */
function loadNats() {
  try {
    return require("nats");
  } catch (error) {
    if (error?.code !== "MODULE_NOT_FOUND" || !process.argv[1]) throw error;
    return createRequire(path.resolve(process.argv[1]))("nats");
  }
}

/**
 * The `connect` options for `security` (the WORKER_NATS_* files): an authenticator for a creds
 * file or an nkey seed, and `tls` (TLS required) when a CA or a client certificate is named.
 * The files are read now; an error names the file, never its contents.
 */
function securityOptions(nats, security) {
  const options = {};
  if (!security) return options;
  const read = (variable, file) => {
    try {
      return readFileSync(file);
    } catch (error) {
      throw new Error(`${variable}=${JSON.stringify(file)} cannot be read (${error?.code ?? error?.message ?? error})`);
    }
  };
  if (security.credsFile) {
    options.authenticator = nats.credsAuthenticator(new Uint8Array(read("WORKER_NATS_CREDS", security.credsFile)));
  } else if (security.nkeyFile) {
    const seed = read("WORKER_NATS_NKEY", security.nkeyFile).toString("utf8").trim();
    options.authenticator = nats.nkeyAuthenticator(new TextEncoder().encode(seed));
  }
  if (security.tlsCaFile || security.tlsCertFile || security.tlsKeyFile) {
    const tls = {};
    if (security.tlsCaFile) tls.caFile = security.tlsCaFile;
    if (security.tlsCertFile) tls.certFile = security.tlsCertFile;
    if (security.tlsKeyFile) tls.keyFile = security.tlsKeyFile;
    options.tls = tls;
  }
  return options;
}

const sleep = (ms, stopped) => {
  let timer;
  return Promise.race([
    new Promise((resolve) => {
      timer = setTimeout(resolve, ms);
    }),
    stopped,
  ]).finally(() => clearTimeout(timer));
};

/**
 * Connects, retrying until a server answers, and logs the connection's changes (each failure
 * once per cause per 30 s, naming the servers). Resolves to `{ client, nats }`, or to the exit
 * code when `stopped` (a signal) came first or the server refused the credentials.
 */
async function connectUntilStopped(
  settings,
  name,
  stopped,
  whileDisconnected = "callbacks get the gateway's default",
  { throttle = new LogThrottle(), retryWaitMs = RECONNECT_WAIT_MS } = {},
) {
  const nats = loadNats();
  const servers = redactNatsUrls(settings.natsServers.join(","));
  let security;
  try {
    security = securityOptions(nats, settings.security);
  } catch (error) {
    log.error(`cannot connect to NATS at ${servers}: ${error.message}`);
    return EXIT_CANNOT_RUN;
  }
  let signalled = false;
  stopped.then(() => (signalled = true));
  for (;;) {
    const connecting = nats.connect({
      ...security,
      servers: settings.natsServers,
      name,
      pingInterval: PING_INTERVAL_MS,
      maxReconnectAttempts: -1,
      waitOnFirstConnect: false,
      reconnectTimeWait: 1000,
    });
    const first = await Promise.race([connecting.then((client) => ({ client }), (error) => ({ error })), stopped]);
    if (first === "signal") {
      log.info("shut down before the worker was ready");
      connecting.then((client) => client.close()).catch(() => {});
      return EXIT_OK;
    }
    if (first.client) {
      watch(first.client, servers, whileDisconnected, throttle);
      return { client: first.client, nats };
    }
    if (isPermanent(first.error)) {
      log.error(`cannot connect to NATS at ${servers}: ${first.error.message}`);
      return EXIT_CANNOT_RUN;
    }
    const held = throttle.admit(`connect ${failureCause(first.error)}`);
    if (held !== null) {
      const more = held ? ` (${held} more attempt(s) failed the same way)` : "";
      log.error(
        `cannot connect to NATS at ${servers}: ${first.error?.message ?? first.error}${more}; ` +
          `retrying every ${retryWaitMs / 1000} s, logged once per ${throttle.intervalMs / 1000} s`,
      );
    }
    await sleep(retryWaitMs, stopped);
    if (signalled) {
      log.info("shut down before the worker was ready");
      return EXIT_OK;
    }
  }
}

/** Logs the connection's changes, each cause once per interval. */
function watch(client, servers, whileDisconnected, throttle) {
  (async () => {
    for await (const status of client.status()) {
      const server = status.data ? redactNatsUrls(String(status.data)) : servers;
      if (status.type === "disconnect") {
        if (throttle.admit(`disconnect ${server}`) !== null) {
          log.warn(`disconnected from NATS at ${server}: ${whileDisconnected} until reconnected`);
        }
      } else if (status.type === "reconnect") {
        if (throttle.admit(`reconnect ${server}`) !== null) log.info(`reconnected to NATS at ${server}`);
      } else if (status.type === "error" || status.type === "slowConsumer") {
        if (throttle.admit(`${status.type} ${status.data ?? ""}`) !== null) {
          log.warn(`nats (${servers}): ${status.type} ${status.data ?? ""}`);
        }
      }
    }
  })().catch(() => {});
}

module.exports = {
  CONNECT_LOG_INTERVAL_MS,
  RECONNECT_WAIT_MS,
  LogThrottle,
  connectUntilStopped,
  securityOptions,
};
