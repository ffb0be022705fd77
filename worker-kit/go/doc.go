// Package openimworker writes an openim-gateway worker in Go as one function per command.
//
// The gateway turns each OpenIM webhook into a NATS request; a worker answers it. This kit does
// the protocol of docs/worker-protocol.md for a Go handler: the subject {prefix}.{command} in
// the queue group openim-workers, skipping a request whose X-Deadline-Unix-Ms has passed (no
// work and no reply after it), the reply without headers, a Nats-Service-Error reply (400 for a
// body that is not the command's request, 500 when the handler fails) so the gateway answers its
// default at once, a bound on the messages in flight, and on SIGINT/SIGTERM a drain that answers
// everything the server has already delivered.
//
// Files, one concept each:
//   - connect.go: the NATS connection from NATS_URL and the WORKER_NATS_* files, its failures
//     logged once per server and cause every 30 s;
//   - deadline.go: the deadline header;
//   - decision.go: Allow, Reject and Modify, the answers;
//   - handler.go: from a typed handler to the bytes of a reply, and its errors;
//   - worker.go: the worker, its subscriptions, bounded concurrency and the drain, and
//     after-callbacks (HandleAfter), which are read and never answered;
//   - after_stream.go: after-callbacks read from the gateway's JetStream stream through a
//     durable consumer (GATEWAY_AFTER_STREAM), acknowledged once handled;
//   - shutdown.go: the SIGINT/SIGTERM context;
//   - log.go: the log lines, on stderr;
//   - models.go: the request of every command and the changes a worker may answer, generated
//     by scripts/gen-models.
package openimworker
