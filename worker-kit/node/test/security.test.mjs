// The WORKER_NATS_* settings: their checks (no server), and a worker connecting to a real
// nats-server that requires an nkey user, then one that requires TLS with a client certificate
// signed by a CA (made here with the openssl command). The worker is examples/refuse-admin.js;
// a request sent straight on its subject checks that it answers. Needs nats-server
// ($NATS_SERVER_BIN, else the last line of the repository's scripts/install-nats) and openssl.

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";

import { connect, headers, nkeyAuthenticator, nkeys } from "nats";
import * as ow from "openim-gateway-worker";

import { Child, cleanEnv, freePort, repository } from "./stack.mjs";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const EXAMPLE = path.join(HERE, "..", "examples", "refuse-admin.js");
const SUBJECT = `${ow.DEFAULT_SUBJECT_PREFIX}.${ow.BEFORE_SET_GROUP_MEMBER_INFO}`;
const START_TIMEOUT_MS = 20000;
const BODY = JSON.stringify({
  callbackCommand: ow.BEFORE_SET_GROUP_MEMBER_INFO,
  groupID: "g",
  userID: "u",
  nickName: "the admin",
  faceURL: null,
  roleLevel: null,
  ex: null,
});

const work = mkdtempSync(path.join(tmpdir(), "kit-node-security-"));
after(() => rmSync(work, { recursive: true, force: true }));
const file = (name, contents) => {
  const at = path.join(work, name);
  writeFileSync(at, contents, { mode: 0o600 });
  return at;
};
const missing = path.join(work, "no-such-file");

function natsServerBin() {
  if (process.env.NATS_SERVER_BIN) return process.env.NATS_SERVER_BIN;
  const out = execFileSync(path.join(repository(), "scripts", "install-nats"), { encoding: "utf8" });
  return out.trim().split("\n").at(-1);
}

/** nats-server with `config` (a `listen` line is added); resolves to the child and its port. */
async function startNats(name, config) {
  const port = await freePort();
  const conf = file(`${name}.conf`, `listen: "127.0.0.1:${port}"\n${config}\n`);
  const server = new Child([natsServerBin(), "-c", conf], cleanEnv());
  if ((await server.waitFor((line) => line.includes("Server is ready"), START_TIMEOUT_MS, "stderr")) === null) {
    throw new Error(`nats-server did not start:\n${server.tail()}`);
  }
  return { server, url: `nats://127.0.0.1:${port}` };
}

function startWorker(env) {
  return new Child([process.execPath, EXAMPLE], { ...cleanEnv(), ...env }, path.join(HERE, ".."));
}

/** Sends the request OpenIM's callback becomes and returns the worker's answer. */
async function ask(options) {
  const client = await connect(options);
  try {
    const h = headers();
    h.set("X-Request-Id", "security-1");
    h.set("X-Callback-Command", ow.BEFORE_SET_GROUP_MEMBER_INFO);
    h.set("X-Timeout-Ms", "5000");
    const reply = await client.request(SUBJECT, new TextEncoder().encode(BODY), { timeout: 5000, headers: h });
    return JSON.parse(new TextDecoder().decode(reply.data));
  } finally {
    await client.close();
  }
}

/** A worker that must refuse to start: its exit code and its stderr. */
async function refused(env) {
  const worker = startWorker(env);
  const { code } = await worker.exited;
  return { code, stderr: worker.lines.stderr };
}

const seed = (pair) => new TextDecoder().decode(pair.getSeed());

describe("settings", () => {
  const user = nkeys.createUser();
  const seedFile = file("settings.nk", `${seed(user)}\n`);
  const pem = file("any.pem", "-----BEGIN CERTIFICATE-----\n");

  test("unset or empty: no security files", () => {
    assert.deepEqual(ow.readSettings({ WORKER_NATS_NKEY: "" }).security, {
      credsFile: null,
      nkeyFile: null,
      tlsCaFile: null,
      tlsCertFile: null,
      tlsKeyFile: null,
    });
  });

  test("readable files are taken", () => {
    const env = { WORKER_NATS_NKEY: seedFile, WORKER_NATS_TLS_CA: pem, WORKER_NATS_TLS_CERT: pem, WORKER_NATS_TLS_KEY: pem };
    assert.deepEqual(ow.readSecurity(env), {
      credsFile: null,
      nkeyFile: seedFile,
      tlsCaFile: pem,
      tlsCertFile: pem,
      tlsKeyFile: pem,
    });
    assert.deepEqual(ow.settingsProblems(env), []);
  });

  test("every bad value at once, one line each, no file contents", () => {
    const notSeed = file("not-a-seed.nk", `${user.getPublicKey()}\n`);
    const problems = ow.settingsProblems({
      WORKER_NATS_CREDS: missing,
      WORKER_NATS_NKEY: notSeed,
      WORKER_NATS_TLS_CA: work, // a directory
      WORKER_NATS_TLS_KEY: pem,
    });
    assert.deepEqual(problems, [
      `WORKER_NATS_CREDS=${JSON.stringify(missing)} is not valid: must be a readable file (ENOENT)`,
      `WORKER_NATS_NKEY=${JSON.stringify(notSeed)} is not valid: must be a file holding a user nkey seed (SU...)`,
      `WORKER_NATS_TLS_CA=${JSON.stringify(work)} is not valid: must be a readable file (EISDIR)`,
      `WORKER_NATS_NKEY=${JSON.stringify(notSeed)} is not valid: must not be set with WORKER_NATS_CREDS: a server accepts one way to authenticate`,
      `WORKER_NATS_TLS_KEY=${JSON.stringify(pem)} is not valid: must come with WORKER_NATS_TLS_CERT`,
    ]);
    assert.ok(!problems.join("\n").includes(user.getPublicKey()));
  });

  test("a certificate without its key; a creds file with an nkey", () => {
    assert.deepEqual(ow.settingsProblems({ WORKER_NATS_TLS_CERT: pem, WORKER_NATS_CREDS: pem, WORKER_NATS_NKEY: seedFile }), [
      `WORKER_NATS_NKEY=${JSON.stringify(seedFile)} is not valid: must not be set with WORKER_NATS_CREDS: a server accepts one way to authenticate`,
      `WORKER_NATS_TLS_CERT=${JSON.stringify(pem)} is not valid: must come with WORKER_NATS_TLS_KEY`,
    ]);
  });

  test("the variables are the kit's, so a misspelling is caught", () => {
    for (const name of ["WORKER_NATS_CREDS", "WORKER_NATS_NKEY", "WORKER_NATS_TLS_CA", "WORKER_NATS_TLS_CERT", "WORKER_NATS_TLS_KEY"]) {
      assert.ok(ow.KIT_VARIABLES.includes(name), name);
      assert.equal(ow[name], name);
    }
    assert.deepEqual(ow.misspelledVariables({ WORKER_NATS_NKY: "x" }, ow.KIT_VARIABLES), [
      "WORKER_NATS_NKY is not a setting of this worker: did you mean WORKER_NATS_NKEY?",
    ]);
  });
});

describe("a nats-server requiring an nkey user", () => {
  const user = nkeys.createUser();
  const other = nkeys.createUser();
  const seedFile = file("user.nk", `${seed(user)}\n`);
  const otherFile = file("other.nk", `${seed(other)}\n`);
  let nats;
  before(async () => {
    nats = await startNats("nkey", `authorization { users = [ { nkey: ${user.getPublicKey()} } ] }`);
  });
  after(() => nats?.server.stop());

  test("the worker connects with WORKER_NATS_NKEY and answers", async () => {
    const worker = startWorker({ NATS_URL: nats.url, WORKER_NATS_NKEY: seedFile });
    try {
      assert.ok(await worker.waitFor((line) => line.startsWith("worker ready on"), START_TIMEOUT_MS), worker.tail());
      const answer = await ask({ servers: nats.url, authenticator: nkeyAuthenticator(user.getSeed()) });
      assert.equal(answer.errCode, 5001);
      assert.equal(answer.actionCode, 0);
    } finally {
      assert.equal(await worker.stop(), 0);
    }
    assert.ok(!worker.lines.stderr.join("\n").includes(seed(user)), "the seed was logged");
  });

  test("without an nkey the server refuses it: one line, exit 1", async () => {
    const { code, stderr } = await refused({ NATS_URL: nats.url });
    assert.equal(code, 1);
    const errors = stderr.filter((line) => line.includes(" ERROR "));
    assert.equal(errors.length, 1, stderr.join("\n"));
    assert.match(errors[0], /cannot connect to NATS at nats:\/\/127\.0\.0\.1:\d+: .*AUTHORIZATION_VIOLATION|Authorization/i);
  });

  test("another user's seed: refused, the seed never shown", async () => {
    const { code, stderr } = await refused({ NATS_URL: nats.url, WORKER_NATS_NKEY: otherFile });
    assert.equal(code, 1);
    assert.equal(stderr.filter((line) => line.includes(" ERROR ")).length, 1, stderr.join("\n"));
    assert.ok(!stderr.join("\n").includes(seed(other)));
  });

  test("a missing seed file: the settings line, exit 2", async () => {
    const { code, stderr } = await refused({ NATS_URL: nats.url, WORKER_NATS_NKEY: missing });
    assert.equal(code, 2);
    assert.deepEqual(stderr, [
      `refuse-admin: WORKER_NATS_NKEY=${JSON.stringify(missing)} is not valid: must be a readable file (ENOENT)`,
    ]);
  });
});



describe("a nats-server requiring TLS and a client certificate", () => {
  const dir = path.join(work, "pki");
  const at = (name) => path.join(dir, name);
  const openssl = (...args) => execFileSync("openssl", args, { cwd: dir, stdio: ["ignore", "ignore", "pipe"] });
  let nats;
  before(async () => {
    execFileSync("mkdir", ["-p", dir]);
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "1", "-subj", "/CN=kit-test-ca");
    const sign = (name, extensions) => {
      writeFileSync(at(`${name}.ext`), extensions);
      openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", `${name}.key`, "-out", `${name}.csr`, "-subj", `/CN=${name}`);
      openssl("x509", "-req", "-in", `${name}.csr`, "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", `${name}.pem`, "-days", "1", "-extfile", `${name}.ext`);
    };
    sign("server", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n");
    sign("client", "extendedKeyUsage=clientAuth\n");
    nats = await startNats(
      "tls",
      `tls { cert_file: "${at("server.pem")}", key_file: "${at("server.key")}", ca_file: "${at("ca.pem")}", verify: true, timeout: 2 }`,
    );
  });
  after(() => nats?.server.stop());

  const tlsEnv = () => ({
    NATS_URL: nats.url,
    WORKER_NATS_TLS_CA: at("ca.pem"),
    WORKER_NATS_TLS_CERT: at("client.pem"),
    WORKER_NATS_TLS_KEY: at("client.key"),
  });

  test("the worker connects with the CA, certificate and key, and answers", async () => {
    const worker = startWorker(tlsEnv());
    try {
      assert.ok(await worker.waitFor((line) => line.startsWith("worker ready on"), START_TIMEOUT_MS), worker.tail());
      const answer = await ask({
        servers: nats.url,
        tls: { caFile: at("ca.pem"), certFile: at("client.pem"), keyFile: at("client.key") },
      });
      assert.equal(answer.errCode, 5001);
    } finally {
      assert.equal(await worker.stop(), 0);
    }
  });

  // The server drops the handshake; the client gives up on the attempt after its 20 s
  // connection timeout, logs it and retries.
  test("without a client certificate the server refuses it: logged, never ready", async () => {
    const worker = startWorker({ NATS_URL: nats.url, WORKER_NATS_TLS_CA: at("ca.pem") });
    try {
      const line = await worker.waitFor((text) => text.includes("cannot connect to NATS"), 40000, "stderr");
      assert.ok(line, worker.tail());
      assert.ok(!worker.lines.stdout.some((text) => text.startsWith("worker ready on")));
    } finally {
      assert.equal(await worker.stop(), 0);
    }
  });

  test("a certificate without its key: the settings line, exit 2", async () => {
    const { WORKER_NATS_TLS_KEY, ...env } = tlsEnv();
    const { code, stderr } = await refused(env);
    assert.equal(code, 2);
    assert.deepEqual(stderr, [
      `refuse-admin: WORKER_NATS_TLS_CERT=${JSON.stringify(at("client.pem"))} is not valid: must come with WORKER_NATS_TLS_KEY`,
    ]);
  });
});
