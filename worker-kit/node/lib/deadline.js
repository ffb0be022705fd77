"use strict";

// X-Deadline-Unix-Ms: the time after which the gateway has answered OpenIM with its default
// and nobody waits for the reply any more.

const { HEADER_DEADLINE_UNIX_MS } = require("./names.js");
const { log } = require("./log.js");

/**
 * The request's deadline (a BigInt of Unix ms), or null when absent or malformed: a malformed
 * one is ignored rather than trusted, since dropping a request somebody waits for is worse.
 */
function deadlineUnixMs(value) {
  if (value === undefined || value === null || value === "") return null;
  const trimmed = value.trim();
  if (/^\+?[0-9]+$/.test(trimmed)) {
    const deadline = BigInt(trimmed.replace(/^\+/, ""));
    if (deadline < 2n ** 64n) return deadline;
  }
  log.debug(`ignoring a malformed ${HEADER_DEADLINE_UNIX_MS}`);
  return null;
}

function nowUnixMs() {
  return BigInt(Date.now());
}

/** Past only once the clock is after the deadline (the deadline millisecond is on time). */
function isPast(deadline, now) {
  return now > deadline;
}

module.exports = {
  deadlineUnixMs,
  nowUnixMs,
  isPast,
};
