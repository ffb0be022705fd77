// A nats-server with JetStream and the gateway (with GATEWAY_AFTER_STREAM when a stream is
// given), as child processes, for the integration tests.
//
// The binaries: $NATS_SERVER_BIN, else the repository's .venv/bin/nats-server, else
// nats-server on PATH; $OPENIM_GATEWAY_BIN, else the repository's target/debug/openim-gateway.

import { spawn } from "node:child_process";
import { accessSync, constants, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { request } from "node:http";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
export const FIXTURE = readFileSync(path.join(ROOT, "fixtures", "openim", "after_set_group_member_info.json"));
export const AFTER_SET_MEMBER = "callbackAfterSetGroupMemberInfoCommand";
export const BEFORE_SET_MEMBER = "callbackBeforeSetGroupMemberInfoCommand";
const START_TIMEOUT_MS = 20000;

function executable(candidate) {
  if (!candidate) return false;
  try {
    accessSync(candidate, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function natsServerBin() {
  const onPath = (process.env.PATH ?? "").split(path.delimiter).map((dir) => path.join(dir, "nats-server"));
  const found = [process.env.NATS_SERVER_BIN, path.join(ROOT, ".venv", "bin", "nats-server"), ...onPath].find(executable);
  if (!found) throw new Error("no nats-server: set NATS_SERVER_BIN or run scripts/install-nats");
  return found;
}

function gatewayBin() {
  const candidate = process.env.OPENIM_GATEWAY_BIN || path.join(ROOT, "target", "debug", "openim-gateway");
  if (!executable(candidate)) throw new Error(`no gateway at ${candidate}: run cargo build -p openim-gateway`);
  return candidate;
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

/** The caller's environment without the settings the children read. */
export function cleanEnv() {
  return Object.fromEntries(
    Object.entries(process.env).filter(
      ([name]) => !/^(GATEWAY_|WORKER_|NATS_)/.test(name) && name !== "RUST_LOG",
    ),
  );
}

/** A child process whose output lines are collected. */
export class Child {
  constructor(argv, env, cwd = ROOT) {
    this.lines = { stdout: [], stderr: [] };
    this.waiters = new Set();
    this.proc = spawn(argv[0], argv.slice(1), { env, cwd, stdio: ["ignore", "pipe", "pipe"] });
    this.exited = new Promise((resolve) => this.proc.once("exit", (code, signal) => resolve({ code, signal })));
    this.exited.then(() => this.notify());
    for (const name of ["stdout", "stderr"]) {
      createInterface({ input: this.proc[name] }).on("line", (line) => {
        this.lines[name].push(line);
        this.notify();
      });
    }
  }

  notify() {
    for (const waiter of [...this.waiters]) waiter();
  }

  matching(predicate, stream = "stderr") {
    return this.lines[stream].filter(predicate);
  }

  /** The first `count` matching lines once there are that many; null on timeout or exit. */
  waitFor(predicate, timeoutMs, stream = "stdout", count = 1) {
    return new Promise((resolve) => {
      const check = () => {
        const found = this.lines[stream].filter(predicate);
        if (found.length >= count) return finish(count > 1 ? found.slice(0, count) : found[0]);
        if (this.proc.exitCode !== null || this.proc.signalCode !== null) return finish(null);
      };
      const timer = setTimeout(() => finish(null), timeoutMs);
      const finish = (value) => {
        clearTimeout(timer);
        this.waiters.delete(check);
        resolve(value);
      };
      this.waiters.add(check);
      check();
    });
  }

  tail(count = 30) {
    return this.lines.stderr.slice(-count).join("\n");
  }

  /** Sends `signal` and waits; kills after `timeoutMs`. The exit code, null when killed. */
  async stop(signal = "SIGTERM", timeoutMs = 10000) {
    if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill(signal);
    let timer;
    const result = await Promise.race([
      this.exited,
      new Promise((resolve) => {
        timer = setTimeout(() => resolve(null), timeoutMs);
      }),
    ]);
    clearTimeout(timer);
    if (result === null) {
      this.proc.kill("SIGKILL");
      await this.exited;
      return null;
    }
    return result.code;
  }
}

/** nats-server -js and the gateway, storing after-callbacks in `stream` unless it is null,
 * with the extra gateway settings of `settings`. */
export class Stack {
  static async start(stream, settings = {}) {
    const stack = new Stack(stream, settings);
    try {
      await stack.startChildren();
    } catch (error) {
      await stack.close();
      throw error;
    }
    return stack;
  }

  constructor(stream, settings = {}) {
    this.stream = stream;
    this.settings = settings;
    this.store = mkdtempSync(path.join(tmpdir(), "openim-after-stream-"));
    this.nats = null;
    this.gateway = null;
  }

  async startChildren() {
    const natsPort = await freePort();
    this.natsUrl = `nats://127.0.0.1:${natsPort}`;
    this.nats = new Child([natsServerBin(), "-js", "-sd", this.store, "-a", "127.0.0.1", "-p", String(natsPort)], cleanEnv());
    if ((await this.nats.waitFor((line) => line.includes("Server is ready"), START_TIMEOUT_MS, "stderr")) === null) {
      throw new Error(`nats-server did not start:\n${this.nats.tail()}`);
    }
    const env = {
      ...cleanEnv(),
      NATS_URL: this.natsUrl,
      GATEWAY_LISTEN: `127.0.0.1:${await freePort()}`,
      RUST_LOG: "info",
      // no pause before the shutdown: nothing balances load here
      GATEWAY_SHUTDOWN_DELAY_MS: "0",
      ...this.settings,
    };
    if (this.stream !== null) env.GATEWAY_AFTER_STREAM = this.stream;
    this.gateway = new Child([gatewayBin()], env);
    const line = await this.gateway.waitFor((text) => text.startsWith("openim-gateway listening on"), START_TIMEOUT_MS);
    if (line === null) throw new Error(`the gateway did not start:\n${this.gateway.tail()}`);
    this.address = line.split("http://")[1].trim();
    const deadline = Date.now() + START_TIMEOUT_MS;
    for (;;) {
      const ready = await this.http("GET", "/readyz").then(
        (response) => response.status === 200,
        () => false,
      );
      if (ready) break;
      if (Date.now() > deadline) throw new Error(`the gateway's /readyz is not 200:\n${this.gateway.tail()}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  /** One request on its own connection (`agent: false`, so `Connection: close`: no idle
   * connection keeps the gateway's shutdown waiting). Resolves to `{ status, headers }`. */
  http(method, target, body = null, headers = {}) {
    const [host, port] = [this.address.slice(0, this.address.lastIndexOf(":")), this.address.split(":").pop()];
    return new Promise((resolve, reject) => {
      const req = request({ host, port: Number(port), method, path: target, headers, agent: false, timeout: 10000 }, (response) => {
        response.resume();
        response.on("end", () => resolve({ status: response.statusCode, headers: response.headers }));
      });
      req.on("timeout", () => req.destroy(new Error(`${method} ${target} timed out`)));
      req.on("error", reject);
      req.end(body ?? undefined);
    });
  }

  /** POSTs an after-callback as OpenIM does; resolves to the gateway's request id once the
   * gateway acknowledged it (stored in the stream). */
  async postAfter(body, command = AFTER_SET_MEMBER) {
    const response = await this.http("POST", `/callbackExample/${command}`, body, {
      "Content-Type": "application/json; charset=utf-8",
      operationID: "after-1",
    });
    const source = response.headers["x-decision-source"];
    if (response.status !== 200 || source !== "ack") {
      throw new Error(`the gateway answered ${response.status} with source ${source}`);
    }
    return response.headers["x-request-id"];
  }

  /** POSTs a before-callback as OpenIM does; resolves to "<status> <X-Decision-Source>",
   * "failed" when the request failed. */
  async postBefore(body, command = BEFORE_SET_MEMBER) {
    try {
      const response = await this.http("POST", `/callbackExample/${command}`, body, {
        "Content-Type": "application/json; charset=utf-8",
        operationID: "before-1",
      });
      return `${response.status} ${response.headers["x-decision-source"]}`;
    } catch {
      return "failed";
    }
  }

  async close() {
    for (const child of [this.gateway, this.nats]) if (child) await child.stop();
    rmSync(this.store, { recursive: true, force: true });
  }
}
