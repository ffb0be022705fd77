// The example worker in Node: the same rules and codes as the Rust `openim-worker-example`.
//
// Decides callbackBeforeSetGroupMemberInfoCommand. Rules, in order; the first that fails
// decides (nicknames are checked after whitespace normalisation: trim, collapse runs into one
// space):
//
// 1. a non-empty nickname that is only whitespace           -> reject 5003
// 2. a nickname containing a banned word (case-insensitive) -> reject 5001
// 3. a nickname longer than WORKER_MAX_NICKNAME_CHARS        -> reject 5002
// 4. a non-empty avatar URL that does not start https://    -> reject 5004
// 5. roleLevel 100 -> reject 5005; any role but 20 or 60     -> reject 5006
// 6. otherwise allow; if normalising changed the nickname, modify it to the normalised value.
//
// A null field is not checked, and the answer never carries any field but a rewritten nickName.
//
// Run: `node worker.js` (env NATS_URL, WORKER_NATS_CREDS, WORKER_NATS_NKEY, WORKER_NATS_TLS_CA,
// WORKER_NATS_TLS_CERT, WORKER_NATS_TLS_KEY, WORKER_SUBJECT_PREFIX, WORKER_BANNED_WORDS,
// WORKER_MAX_NICKNAME_CHARS, WORKER_CONCURRENCY, WORKER_LOG_LEVEL); `--help`, `--version`.
// A bad setting, or a misspelled WORKER_* variable, stops the start: every problem is
// printed, each line prefixed by the program's name, and the exit code is 2.

import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";

import * as ow from "openim-gateway-worker";

export const ERR_BANNED_WORD = 5001;
export const ERR_NICKNAME_TOO_LONG = 5002;
export const ERR_BLANK_NICKNAME = 5003;
export const ERR_AVATAR_NOT_HTTPS = 5004;
export const ERR_OWNER_ROLE = 5005;
export const ERR_UNKNOWN_ROLE = 5006;

export const ROLE_MEMBER = 20;
export const ROLE_ADMIN = 60;
export const ROLE_OWNER = 100;

export const DEFAULT_BANNED_WORDS = ["admin", "official", "openim"];
export const DEFAULT_MAX_NICKNAME_CHARS = 32;
export const MAX_NICKNAME_CHARS_LIMIT = 255;

export const WORKER_BANNED_WORDS = "WORKER_BANNED_WORDS";
export const WORKER_MAX_NICKNAME_CHARS = "WORKER_MAX_NICKNAME_CHARS";

const HTTPS_PREFIX = "https://";

export const PROGRAM = "openim-worker-example-node";
export const VERSION = JSON.parse(readFileSync(new URL("./package.json", import.meta.url), "utf8")).version;
export const VARIABLES = [WORKER_BANNED_WORDS, WORKER_MAX_NICKNAME_CHARS];

export const HELP = `${PROGRAM} ${VERSION}: the example openim-gateway worker in Node

Decides ${ow.BEFORE_SET_GROUP_MEMBER_INFO}: refuses blank nicknames (5003), nicknames
with a banned word (5001) or too long (5002), avatars not on https (5004), the owner role
(5005) and unknown roles (5006); tidies the nickname's whitespace.

Usage: node worker.js [--help | --version]

Environment:
  NATS_URL                   NATS servers, comma-separated (default ${ow.DEFAULT_NATS_URL})
  WORKER_NATS_CREDS          a creds file (user JWT and nkey seed); not with an nkey
  WORKER_NATS_NKEY           a file holding a user nkey seed (SU...)
  WORKER_NATS_TLS_CA         a PEM CA file; set: TLS is required
  WORKER_NATS_TLS_CERT       a PEM client certificate, with WORKER_NATS_TLS_KEY (its key)
  WORKER_SUBJECT_PREFIX      subject prefix, as the gateway's (default ${ow.DEFAULT_SUBJECT_PREFIX})
  WORKER_BANNED_WORDS        comma-separated, case-insensitive (default ${DEFAULT_BANNED_WORDS.join(",")})
  WORKER_MAX_NICKNAME_CHARS  1..=${MAX_NICKNAME_CHARS_LIMIT} (default ${DEFAULT_MAX_NICKNAME_CHARS})
  WORKER_CONCURRENCY         handlers at a time, 1..=${ow.MAX_CONCURRENCY} (default ${ow.DEFAULT_CONCURRENCY})
  WORKER_LOG_LEVEL           debug, info, warn or error (default info)

Exit codes: 0 after SIGTERM/SIGINT, 1 when it cannot run, 2 for bad settings or arguments.
`;

/** The policy's settings. Banned words are stored normalised, lowercased and non-empty. */
export function makeRules(bannedWords = DEFAULT_BANNED_WORDS, maxNicknameChars = DEFAULT_MAX_NICKNAME_CHARS) {
  const words = bannedWords.map((word) => ow.normaliseWhitespace(word).toLowerCase()).filter((word) => word !== "");
  return Object.freeze({ bannedWords: Object.freeze(words), maxNicknameChars });
}

/**
 * WORKER_BANNED_WORDS: comma-separated, set but empty means none. WORKER_MAX_NICKNAME_CHARS:
 * an integer in 1..=255. Throws ow.SettingsError.
 */
export function rulesFromEnv(env = process.env) {
  const maxChars = ow.parseIntSetting(
    env,
    WORKER_MAX_NICKNAME_CHARS,
    DEFAULT_MAX_NICKNAME_CHARS,
    1,
    MAX_NICKNAME_CHARS_LIMIT,
  );
  const words = env[WORKER_BANNED_WORDS];
  return makeRules(words === undefined ? DEFAULT_BANNED_WORDS : words.split(","), maxChars);
}

/** The first banned word the (already normalised) nickname contains, or null. */
export function bannedWordIn(rules, nickname) {
  const lowercase = nickname.toLowerCase();
  return rules.bannedWords.find((word) => lowercase.includes(word)) ?? null;
}

/** `https://` at the start, compared ASCII case-insensitively (URL schemes are). */
export function startsWithHttps(url) {
  const scheme = url.slice(0, HTTPS_PREFIX.length);
  return /^[\x00-\x7f]*$/.test(scheme) && scheme.toLowerCase() === HTTPS_PREFIX;
}

/** One request's decision; pure, so the unit tests call it directly. */
export function decide(rules, request) {
  const original = request.nickName;
  const nickname = original === null ? null : ow.normaliseWhitespace(original);

  if (original !== null) {
    // "" clears the nickname; only whitespace that collapses to nothing is refused.
    if (nickname === "" && original !== "") {
      return ow.reject(ERR_BLANK_NICKNAME, "nickname must not be blank");
    }
    // The word is not named: the message reaches the end user.
    if (bannedWordIn(rules, nickname) !== null) {
      return ow.reject(ERR_BANNED_WORD, "nickname contains a banned word");
    }
    // Characters are Unicode code points, not UTF-16 units: an emoji counts once.
    if ([...nickname].length > rules.maxNicknameChars) {
      return ow.reject(ERR_NICKNAME_TOO_LONG, `nickname is longer than ${rules.maxNicknameChars} characters`);
    }
  }

  const faceURL = request.faceURL;
  if (faceURL !== null && faceURL !== "" && !startsWithHttps(faceURL)) {
    return ow.reject(ERR_AVATAR_NOT_HTTPS, "avatar URL must use https");
  }

  const role = request.roleLevel;
  if (role !== null && role !== ROLE_MEMBER && role !== ROLE_ADMIN) {
    if (role === ROLE_OWNER) {
      return ow.reject(ERR_OWNER_ROLE, "the owner changes through a group owner transfer, not member info");
    }
    return ow.reject(ERR_UNKNOWN_ROLE, "roleLevel must be 20 (member) or 60 (admin)");
  }

  return nickname !== original ? ow.modify(ow.BEFORE_SET_GROUP_MEMBER_INFO, { nickName: nickname }) : ow.allow();
}

/**
 * The program: `args` are the command-line arguments. Resolves to the exit code; never
 * starts for --help, --version or a bad argument or setting.
 */
export async function main(args = process.argv.slice(2), env = process.env) {
  if (args.includes("--help") || args.includes("-h")) {
    process.stdout.write(HELP);
    return ow.EXIT_OK;
  }
  if (args.includes("--version") || args.includes("-V")) {
    process.stdout.write(`${PROGRAM} ${VERSION} (openim-gateway-worker ${ow.VERSION})\n`);
    return ow.EXIT_OK;
  }
  if (args.length) {
    ow.reportProblems(PROGRAM, [`unexpected argument ${JSON.stringify(args[0])}; see --help`]);
    return ow.EXIT_BAD_SETTINGS;
  }
  // Every problem at once: the kit's settings, this worker's, and misspelled names.
  const problems = ow.settingsProblems(env, { variables: VARIABLES });
  let rules;
  try {
    rules = rulesFromEnv(env);
  } catch (error) {
    if (!(error instanceof ow.SettingsError)) throw error;
    problems.push(...error.problems);
  }
  if (problems.length) {
    ow.reportProblems(PROGRAM, problems);
    return ow.EXIT_BAD_SETTINGS;
  }
  return ow.run(
    { [ow.BEFORE_SET_GROUP_MEMBER_INFO]: (request) => decide(rules, request) },
    { name: PROGRAM, env, variables: VARIABLES },
  );
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  // exit() rather than exitCode: a connection attempt still retrying would keep Node running.
  process.exit(await main());
}
