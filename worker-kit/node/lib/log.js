"use strict";

// Logs on stderr, one line each, prefixed by the time, the level and the program's name;
// stdout carries only the readiness line.

const LOG_LEVELS = { debug: 10, info: 20, warn: 30, warning: 30, error: 40 };

// --- Logs (stderr; stdout carries only the readiness line) -----------------------------------

/** The log on stderr; `program` prefixes every line (set from the worker's name by `run()`). */
const log = {
  level: LOG_LEVELS.info,
  program: "openim-worker",
  write(level, name, message) {
    if (LOG_LEVELS[level] >= this.level) {
      process.stderr.write(`${new Date().toISOString()} ${name.toUpperCase()} ${this.program}: ${message}\n`);
    }
  },
  debug(message) {
    this.write("debug", "debug", message);
  },
  info(message) {
    this.write("info", "info", message);
  },
  warn(message) {
    this.write("warn", "warn", message);
  },
  error(message) {
    this.write("error", "error", message);
  },
};

module.exports = {
  LOG_LEVELS,
  log,
};
