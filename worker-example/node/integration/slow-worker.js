// A worker on the Node kit (worker-kit/node) whose handler takes a few milliseconds, so that a shutdown
// finds handlers running and messages waiting for a free slot: the drain tests' worker.

import * as ow from "openim-gateway-worker";

const HANDLER_MS = 5;

process.exit(await ow.run({
  [ow.BEFORE_SET_GROUP_MEMBER_INFO]: async () => {
    await new Promise((resolve) => setTimeout(resolve, HANDLER_MS));
    return ow.allow();
  },
}, { name: "openim-slow-worker-node" }));
