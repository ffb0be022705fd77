"use strict";

// The programs: `run()` for a before-callback worker, `runAfterStream()` for an after-callback
// consumer. Both read the settings, refuse to start on a bad one (every problem printed,
// exit 2), and run until SIGTERM/SIGINT.

const { EXIT_BAD_SETTINGS } = require("./names.js");
const { readSettings, settingsProblems } = require("./settings.js");
const { log } = require("./log.js");
const { serve } = require("./service.js");
const { serveAfterStream } = require("./after-stream.js");

/**
 * Reads the settings, runs the worker until SIGTERM/SIGINT and resolves to the exit code:
 * 0 after a signal, 1 when it cannot run, 2 for bad settings (one line each on stderr, each
 * prefixed by `name`). `variables`: the worker's own setting names, so that a misspelling of
 * them is caught too. Pass the result to `process.exit()`: a connection attempt still
 * retrying would otherwise keep Node running.
 */
async function run(handlers, { name = "openim-worker-node", parsers = {}, env = process.env, variables = [] } = {}) {
  const settings = startup(name, env, variables);
  return settings === null ? EXIT_BAD_SETTINGS : serve(settings, handlers, { name, parsers });
}

/**
 * `consumeAfterStream` as a program: reads the settings (NATS_URL, WORKER_SUBJECT_PREFIX,
 * WORKER_CONCURRENCY, WORKER_LOG_LEVEL), prints `worker ready on stream ...` once the
 * consumer exists, stops cleanly on SIGTERM/SIGINT. Resolves to the exit code: 0 after a
 * signal, 1 when it cannot run, 2 for bad settings. Pass it to `process.exit()`.
 */
async function runAfterStream({ name = "openim-after-worker-node", env = process.env, variables = [], ...options }) {
  const settings = startup(name, env, variables);
  return settings === null ? EXIT_BAD_SETTINGS : serveAfterStream(settings, { name, ...options });
}

/** Prints each problem on stderr, prefixed by the program's name. */
function reportProblems(name, problems) {
  for (const problem of problems) process.stderr.write(`${name}: ${problem}\n`);
}

/**
 * What both programs do first: read the settings (null after printing every problem) and set
 * up logging.
 */
function startup(name, env, variables) {
  log.program = name;
  const problems = settingsProblems(env, { variables });
  if (problems.length) {
    reportProblems(name, problems);
    return null;
  }
  const settings = readSettings(env);
  log.level = settings.logLevel;
  log.info(`connecting to NATS (${settings.natsServers.length} server(s)), concurrency ${settings.concurrency}`);
  return settings;
}

module.exports = {
  run,
  runAfterStream,
  reportProblems,
};
