"""A worker on openim_gateway_worker whose handler takes a few milliseconds, so that a shutdown finds
handlers running and messages waiting for a free slot: the drain test's worker."""

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import openim_gateway_worker as ow  # noqa: E402

HANDLER_S = 0.005


async def decide(_request: ow.SetGroupMemberInfoRequest) -> ow.Decision:
    await asyncio.sleep(HANDLER_S)
    return ow.allow()


if __name__ == "__main__":
    raise SystemExit(ow.run({ow.BEFORE_SET_GROUP_MEMBER_INFO: decide},
                            name="openim-slow-worker-py"))
