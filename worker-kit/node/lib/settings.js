"use strict";

// The settings every worker reads from the environment: checked all at once (every bad value
// reported), misspelled WORKER_* variables caught, passwords in NATS URLs never shown.

const { readFileSync } = require("node:fs");

const { DEFAULT_SUBJECT_PREFIX } = require("./names.js");
const { LOG_LEVELS } = require("./log.js");

// --- Settings --------------------------------------------------------------------------------

const NATS_URL = "NATS_URL";
const WORKER_SUBJECT_PREFIX = "WORKER_SUBJECT_PREFIX";
const WORKER_CONCURRENCY = "WORKER_CONCURRENCY";
const WORKER_LOG_LEVEL = "WORKER_LOG_LEVEL";
// How the worker authenticates to NATS and checks the server, beside a user and password or a
// token in NATS_URL: the same variables and rules as the Rust and Go workers.
const WORKER_NATS_CREDS = "WORKER_NATS_CREDS";
const WORKER_NATS_NKEY = "WORKER_NATS_NKEY";
const WORKER_NATS_TLS_CA = "WORKER_NATS_TLS_CA";
const WORKER_NATS_TLS_CERT = "WORKER_NATS_TLS_CERT";
const WORKER_NATS_TLS_KEY = "WORKER_NATS_TLS_KEY";

const DEFAULT_NATS_URL = "nats://127.0.0.1:4222";
const DEFAULT_CONCURRENCY = 64;
const MAX_CONCURRENCY = 10000;

// The Node client speaks plain NATS and TLS; websockets need another package.
const NATS_SCHEMES = ["nats:", "tls:"];

/**
 * A setting that cannot be used; `message` is the whole line to print (several lines when
 * several values are bad) and `problems` one line per bad value.
 */
class SettingsError extends Error {
  constructor(variable, value, rule) {
    super(`${variable}=${JSON.stringify(value)} is not valid: ${rule}`);
    this.name = "SettingsError";
    this.variable = variable;
    this.problems = [this.message];
  }

  /** One error for several problems (lines). */
  static of(problems) {
    const error = new SettingsError("", "", "");
    error.message = problems.join("\n");
    error.variable = null;
    error.problems = [...problems];
    return error;
  }
}

// Unicode's White_Space property, the set Rust's `char::is_whitespace` uses. JavaScript's `\s`
// differs from it (it also matches U+FEFF), so the rules and the subject check use this
// explicit set to decide exactly as the Rust worker does.
const WHITESPACE_CHARS =
  "\t\n\u000b\u000c\r \u0085\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006" +
  "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000";
const WHITESPACE_RUN = /[\t\n\u000b\u000c\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+/u;

/** Trims and collapses every run of Unicode whitespace into one ASCII space. */
function normaliseWhitespace(text) {
  return text
    .split(WHITESPACE_RUN)
    .filter((part) => part !== "")
    .join(" ");
}

/** Dot-separated non-empty tokens without whitespace, control characters or wildcards. */
function isValidSubject(subject) {
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
function redactNatsUrls(value) {
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
function parseNatsUrls(value) {
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
function parseIntSetting(env, variable, fallback, low, high) {
  const value = env[variable];
  if (value === undefined) return fallback;
  if (/^\+?[0-9]+$/.test(value)) {
    const number = Number(value);
    if (number >= low && number <= high) return number;
  }
  throw new SettingsError(variable, value, `must be an integer in ${low}..=${high}`);
}

/** The variables every worker built on this kit reads. */
const KIT_VARIABLES = Object.freeze([
  NATS_URL,
  WORKER_NATS_CREDS,
  WORKER_NATS_NKEY,
  WORKER_NATS_TLS_CA,
  WORKER_NATS_TLS_CERT,
  WORKER_NATS_TLS_KEY,
  WORKER_SUBJECT_PREFIX,
  WORKER_CONCURRENCY,
  WORKER_LOG_LEVEL,
]);

/** The contents of a file a setting names; SettingsError (naming the path, never the contents)
 * when it cannot be read. */
function readSettingFile(variable, file) {
  try {
    return readFileSync(file);
  } catch (error) {
    throw new SettingsError(variable, file, `must be a readable file (${error?.code ?? error?.message ?? error})`);
  }
}

/**
 * WORKER_NATS_CREDS, WORKER_NATS_NKEY, WORKER_NATS_TLS_CA, WORKER_NATS_TLS_CERT and
 * WORKER_NATS_TLS_KEY: file paths, null when unset or empty. Each named file must be readable,
 * an nkey file must hold a user seed (SU...), a creds file and an nkey are not taken together,
 * and a client certificate comes with its key. Throws one SettingsError naming every problem;
 * the files' contents are never shown.
 */
function readSecurity(env = process.env) {
  const path = (variable) => (env[variable] === undefined || env[variable] === "" ? null : env[variable]);
  const security = {
    credsFile: path(WORKER_NATS_CREDS),
    nkeyFile: path(WORKER_NATS_NKEY),
    tlsCaFile: path(WORKER_NATS_TLS_CA),
    tlsCertFile: path(WORKER_NATS_TLS_CERT),
    tlsKeyFile: path(WORKER_NATS_TLS_KEY),
  };
  const { problems } = collectSettings([
    () => security.credsFile !== null && readSettingFile(WORKER_NATS_CREDS, security.credsFile),
    () => {
      if (security.nkeyFile === null) return;
      const seed = readSettingFile(WORKER_NATS_NKEY, security.nkeyFile).toString("utf8").trim();
      if (!/^SU[A-Z2-7]+$/.test(seed)) {
        throw new SettingsError(WORKER_NATS_NKEY, security.nkeyFile, "must be a file holding a user nkey seed (SU...)");
      }
    },
    () => security.tlsCaFile !== null && readSettingFile(WORKER_NATS_TLS_CA, security.tlsCaFile),
    () => security.tlsCertFile !== null && readSettingFile(WORKER_NATS_TLS_CERT, security.tlsCertFile),
    () => security.tlsKeyFile !== null && readSettingFile(WORKER_NATS_TLS_KEY, security.tlsKeyFile),
    () => {
      if (security.credsFile !== null && security.nkeyFile !== null) {
        throw new SettingsError(
          WORKER_NATS_NKEY,
          security.nkeyFile,
          `must not be set with ${WORKER_NATS_CREDS}: a server accepts one way to authenticate`,
        );
      }
    },
    () => {
      if (security.tlsCertFile !== null && security.tlsKeyFile === null) {
        throw new SettingsError(WORKER_NATS_TLS_CERT, security.tlsCertFile, `must come with ${WORKER_NATS_TLS_KEY}`);
      }
      if (security.tlsKeyFile !== null && security.tlsCertFile === null) {
        throw new SettingsError(WORKER_NATS_TLS_KEY, security.tlsKeyFile, `must come with ${WORKER_NATS_TLS_CERT}`);
      }
    },
  ]);
  if (problems.length) throw SettingsError.of(problems);
  return Object.freeze(security);
}

/**
 * Runs each reader in turn and collects every SettingsError instead of stopping at the first,
 * so a bad start reports everything wrong at once. Resolves to `{ values, problems }`:
 * `values[i]` is what reader i returned (undefined when it threw), `problems` the messages.
 */
function collectSettings(readers) {
  const values = [];
  const problems = [];
  for (const read of readers) {
    try {
      values.push(read());
    } catch (error) {
      if (!(error instanceof SettingsError)) throw error;
      problems.push(...error.problems);
      values.push(undefined);
    }
  }
  return { values, problems };
}

/**
 * What every worker built on this kit reads from the environment. Throws one SettingsError
 * naming every bad value (`error.problems` holds one line per value).
 */
function readSettings(env = process.env) {
  const { values, problems } = collectSettings([
    () => parseNatsUrls(env[NATS_URL] ?? DEFAULT_NATS_URL),
    () => {
      const subjectPrefix = env[WORKER_SUBJECT_PREFIX] ?? DEFAULT_SUBJECT_PREFIX;
      if (!isValidSubject(subjectPrefix)) {
        throw new SettingsError(
          WORKER_SUBJECT_PREFIX,
          subjectPrefix,
          "must be a NATS subject without wildcards or whitespace, such as openim.callback",
        );
      }
      return subjectPrefix;
    },
    () => parseIntSetting(env, WORKER_CONCURRENCY, DEFAULT_CONCURRENCY, 1, MAX_CONCURRENCY),
    () => {
      const levelName = (env[WORKER_LOG_LEVEL] ?? "").trim().toLowerCase() || "info";
      if (!(levelName in LOG_LEVELS)) {
        throw new SettingsError(WORKER_LOG_LEVEL, env[WORKER_LOG_LEVEL], "must be one of debug, info, warn, error");
      }
      return LOG_LEVELS[levelName];
    },
    () => readSecurity(env),
  ]);
  if (problems.length) throw SettingsError.of(problems);
  const [natsServers, subjectPrefix, concurrency, logLevel, security] = values;
  return { natsServers, subjectPrefix, concurrency, logLevel, security };
}

/** The Levenshtein distance between two strings (insertions, deletions, substitutions). */
function editDistance(a, b) {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const substitution = previous[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1);
      current.push(Math.min(previous[j] + 1, current[j - 1] + 1, substitution));
    }
    previous = current;
  }
  return previous[b.length];
}

// A variable this close to a known one (after upper-casing) is taken for a misspelling.
const MAX_MISSPELLING_DISTANCE = 2;

/**
 * One line per `WORKER_*` variable of `env` (any case) that is not one of `known` but close
 * to one: a misspelled setting would otherwise be ignored silently and its default used.
 * Variables far from every known one belong to other programs and are left alone.
 */
function misspelledVariables(env, known) {
  const problems = [];
  for (const name of Object.keys(env).sort()) {
    if (known.includes(name) || !name.toUpperCase().startsWith("WORKER_")) continue;
    const upper = name.toUpperCase();
    let best = null;
    for (const candidate of known) {
      const distance = editDistance(upper, candidate);
      if (distance <= MAX_MISSPELLING_DISTANCE && (best === null || distance < best.distance)) {
        best = { candidate, distance };
      }
    }
    if (best !== null) {
      problems.push(`${name} is not a setting of this worker: did you mean ${best.candidate}?`);
    }
  }
  return problems;
}

/**
 * Every problem with the kit's settings and the misspelled `WORKER_*` variables, one line
 * each (empty when all is well). `variables` are the worker's own settings, also known names.
 */
function settingsProblems(env = process.env, { variables = [] } = {}) {
  const problems = [];
  try {
    readSettings(env);
  } catch (error) {
    if (!(error instanceof SettingsError)) throw error;
    problems.push(...error.problems);
  }
  problems.push(...misspelledVariables(env, [...KIT_VARIABLES, ...variables]));
  return problems;
}

/** A stream or consumer name: not empty, no whitespace, control characters, `.`, `*`, `>`,
 * `/` or `\`. */
function isValidName(name) {
  return (
    typeof name === "string" &&
    name !== "" &&
    [...name].every((c) => !WHITESPACE_CHARS.includes(c) && !/\p{Cc}/u.test(c) && !".*>/\\".includes(c))
  );
}

/** A stream or consumer name from the environment. Throws SettingsError. */
function parseNameSetting(env, variable, fallback) {
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

module.exports = {
  KIT_VARIABLES,
  collectSettings,
  editDistance,
  misspelledVariables,
  settingsProblems,
  NATS_URL,
  WORKER_SUBJECT_PREFIX,
  WORKER_CONCURRENCY,
  WORKER_LOG_LEVEL,
  WORKER_NATS_CREDS,
  WORKER_NATS_NKEY,
  WORKER_NATS_TLS_CA,
  WORKER_NATS_TLS_CERT,
  WORKER_NATS_TLS_KEY,
  readSecurity,
  DEFAULT_NATS_URL,
  DEFAULT_CONCURRENCY,
  MAX_CONCURRENCY,
  SettingsError,
  WHITESPACE_CHARS,
  normaliseWhitespace,
  isValidSubject,
  redactNatsUrls,
  parseNatsUrls,
  parseIntSetting,
  readSettings,
  isValidName,
  parseNameSetting,
};
