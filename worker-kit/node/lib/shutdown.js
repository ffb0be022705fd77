"use strict";

// Shutdown: SIGTERM (what Docker and Kubernetes send) or SIGINT (Ctrl-C) starts the drain.

/** A promise resolved with "signal" on the first SIGTERM or SIGINT. */
function stopOnSignals() {
  return new Promise((resolve) => {
    for (const signal of ["SIGTERM", "SIGINT"]) process.once(signal, () => resolve("signal"));
  });
}

module.exports = {
  stopOnSignals,
};
