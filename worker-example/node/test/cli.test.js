// The example worker as a program: --help and --version print and exit 0 without starting;
// bad settings and misspelled WORKER_* variables stop the start with every problem at once,
// each line prefixed by the program's name, exit code 2; a missing server is logged once.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { createServer } from "node:net";
import path from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

import { nkeys } from "nats";

const WORKER = path.join(path.dirname(fileURLToPath(import.meta.url)), "..", "worker.js");
const PROGRAM = "openim-worker-example-node";
// NATS_URL points at nothing: a worker that wrongly started would not answer, only retry.
const BASE_ENV = { PATH: process.env.PATH, NATS_URL: "nats://127.0.0.1:9" };

function runWorker(args, env = BASE_ENV, killAfterMs = 10000) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [WORKER, ...args], { env, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk) => (stdout += chunk));
    child.stderr.on("data", (chunk) => (stderr += chunk));
    const timer = setTimeout(() => child.kill("SIGTERM"), killAfterMs);
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

test("--help prints the usage and the settings, exits 0, never connects", async () => {
  for (const flag of ["--help", "-h"]) {
    const { code, stdout, stderr } = await runWorker([flag]);
    assert.equal(code, 0, stderr);
    assert.match(stdout, /^openim-worker-example-node \d+\.\d+\.\d+: /);
    for (const variable of ["NATS_URL", "WORKER_BANNED_WORDS", "WORKER_MAX_NICKNAME_CHARS", "WORKER_CONCURRENCY"]) {
      assert.ok(stdout.includes(variable), variable);
    }
    assert.equal(stderr, "");
  }
});

test("--version prints the worker's and the kit's versions, exits 0", async () => {
  const { code, stdout, stderr } = await runWorker(["--version"], { ...BASE_ENV, WORKER_CONCURRENCY: "0" });
  assert.equal(code, 0, stderr);
  assert.match(stdout, /^openim-worker-example-node 0\.1\.0 \(openim-gateway-worker \d+\.\d+\.\d+\)\n$/);
  assert.equal(stderr, "");
});

test("an unknown argument is refused with exit code 2", async () => {
  const { code, stdout, stderr } = await runWorker(["--verbose"]);
  assert.equal(code, 2);
  assert.equal(stdout, "");
  assert.equal(stderr, `${PROGRAM}: unexpected argument "--verbose"; see --help\n`);
});

test("every bad value and misspelling is reported at once, prefixed, exit code 2", async () => {
  const { code, stdout, stderr } = await runWorker([], {
    PATH: process.env.PATH,
    NATS_URL: "http://nats:4222",
    WORKER_CONCURRENCY: "0",
    WORKER_MAX_NICKNAME_CHARS: "300",
    WORKER_BANED_WORDS: "boss",
    WORKER_LOG_LEVL: "debug",
  });
  assert.equal(code, 2);
  assert.equal(stdout, "");
  const lines = stderr.trimEnd().split("\n");
  assert.equal(lines.length, 5, stderr);
  for (const line of lines) assert.ok(line.startsWith(`${PROGRAM}: `), line);
  assert.ok(lines.some((line) => line.startsWith(`${PROGRAM}: NATS_URL="http://nats:4222" is not valid`)));
  assert.ok(lines.some((line) => line.startsWith(`${PROGRAM}: WORKER_CONCURRENCY="0" is not valid`)));
  assert.ok(lines.some((line) => line.startsWith(`${PROGRAM}: WORKER_MAX_NICKNAME_CHARS="300" is not valid`)));
  assert.ok(lines.includes(`${PROGRAM}: WORKER_BANED_WORDS is not a setting of this worker: did you mean WORKER_BANNED_WORDS?`));
  assert.ok(lines.includes(`${PROGRAM}: WORKER_LOG_LEVL is not a setting of this worker: did you mean WORKER_LOG_LEVEL?`));
});

test("another program's WORKER_* variable is not taken for a misspelling", async () => {
  const { code, stderr } = await runWorker([], { ...BASE_ENV, WORKER_AFTER_STREAM: "S", WORKER_HTTP_PORT: "8080" }, 1500);
  assert.equal(code, 0, stderr);
  assert.ok(!stderr.includes("did you mean"), stderr);
});

test("the NATS security variables are settings: readable files accepted, a missing one refused", async () => {
  const dir = mkdtempSync(path.join(tmpdir(), "example-node-security-"));
  try {
    const seedFile = path.join(dir, "user.nk");
    writeFileSync(seedFile, `${new TextDecoder().decode(nkeys.createUser().getSeed())}\n`, { mode: 0o600 });
    const pem = path.join(dir, "any.pem");
    writeFileSync(pem, "");
    const files = { WORKER_NATS_NKEY: seedFile, WORKER_NATS_TLS_CA: pem, WORKER_NATS_TLS_CERT: pem, WORKER_NATS_TLS_KEY: pem };
    const accepted = await runWorker([], { ...BASE_ENV, ...files }, 1500);
    assert.equal(accepted.code, 0, accepted.stderr);
    assert.ok(!accepted.stderr.includes("is not"), accepted.stderr);

    const missing = path.join(dir, "missing.creds");
    const refused = await runWorker([], { ...BASE_ENV, WORKER_NATS_CREDS: missing, WORKER_NATS_NKY: seedFile });
    assert.equal(refused.code, 2);
    assert.deepEqual(refused.stderr.trimEnd().split("\n"), [
      `${PROGRAM}: WORKER_NATS_CREDS=${JSON.stringify(missing)} is not valid: must be a readable file (ENOENT)`,
      `${PROGRAM}: WORKER_NATS_NKY is not a setting of this worker: did you mean WORKER_NATS_NKEY?`,
    ]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
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

test("without a server: one line per cause per 30 s naming the server, SIGTERM exits 0", async () => {
  const port = await closedPort();
  const { code, stderr } = await runWorker([], { PATH: process.env.PATH, NATS_URL: `nats://127.0.0.1:${port}` }, 3500);
  assert.equal(code, 0, stderr);
  const failures = stderr.split("\n").filter((line) => line.includes("cannot connect"));
  assert.equal(failures.length, 1, stderr);
  assert.match(failures[0], new RegExp(`ERROR ${PROGRAM}: cannot connect to NATS at nats://127\\.0\\.0\\.1:${port}: `));
  assert.match(stderr, /shut down before the worker was ready/);
});
