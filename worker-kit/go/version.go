package openimworker

// Version is this kit's version: the version of the worker protocol it speaks
// (docs/worker-protocol.md, "Worker protocol version"). scripts/check-kit-versions fails when
// the two differ.
const Version = "1.0.0"
