"""A worker on openim_gateway_worker (slow_worker.py: a handler of a few milliseconds) stopped with
SIGTERM under load, against a real nats-server and the real gateway: two Python workers share the callbacks of concurrent callers; one is
frozen (SIGSTOP) so that messages pile up for it, sent SIGTERM, then thawed (SIGCONT). It
must answer everything the server routed to it before the unsubscribe and exit 0, so not a
single callback is answered by the gateway's default.

    cd worker-example/python && ../../.venv/bin/python -m unittest integration.test_drain_under_load
"""

import signal
import sys
import threading
import time
import unittest
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from integration.stack import ROOT, Child, Stack, clean_env  # noqa: E402

BODY = (ROOT / "fixtures" / "openim" / "before_set_group_member_info.role_only.json").read_bytes()
# Long enough that a slow machine answers everything in time, short enough that a callback
# the stopped worker lost shows up as fallback:timeout within the test.
SETTINGS = {"GATEWAY_CALLBACK_TIMEOUT_MS": "2000", "GATEWAY_SAFETY_MARGIN_MS": "100"}
CALLERS = 16
LOAD_S = 3.0
STOP_AT_S = 1.0
FROZEN_S = 0.15
START_TIMEOUT_S = 20.0


def start_worker(stack: Stack) -> Child:
    # Two handlers at a time: at the SIGTERM, handlers are running and what the stopped worker
    # received waits for a slot; the drain must answer all of it.
    env = clean_env() | {"NATS_URL": stack.nats_url, "WORKER_LOG_LEVEL": "info",
                         "WORKER_CONCURRENCY": "2"}
    worker = Child([sys.executable, str(HERE / "slow_worker.py")], env)
    if worker.wait_for(lambda line: line.startswith("worker ready on"), START_TIMEOUT_S) is None:
        worker.stop()
        raise RuntimeError(f"slow_worker.py did not start:\n{worker.tail()}")
    return worker


def load(stack: Stack, callers: int, seconds: float) -> Counter:
    """`callers` closed-loop callers for `seconds`; the count of each (status, source)."""
    outcomes: Counter = Counter()
    lock = threading.Lock()
    until = time.monotonic() + seconds

    def caller() -> None:
        while time.monotonic() < until:
            outcome = stack.post_before(BODY)
            with lock:
                outcomes[outcome] += 1

    threads = [threading.Thread(target=caller) for _ in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


class DrainUnderLoad(unittest.TestCase):
    def setUp(self):
        self.stack = Stack(None, SETTINGS)
        self.addCleanup(self.stack.close)
        self.workers = []
        for _ in range(2):
            worker = start_worker(self.stack)
            self.addCleanup(worker.stop)
            self.workers.append(worker)
        # Both workers answer before the load starts.
        self.assertEqual(self.stack.post_before(BODY), (200, "worker"))

    def test_a_worker_stopped_under_load_drains_without_a_single_default(self):
        stopped = self.workers[0]

        def stop_mid_load() -> None:
            time.sleep(STOP_AT_S)
            # Frozen, the worker reads nothing: messages wait for it in the socket. The SIGTERM
            # is handled once it runs again, with that backlog to answer.
            stopped.proc.send_signal(signal.SIGSTOP)
            time.sleep(FROZEN_S)
            stopped.proc.send_signal(signal.SIGTERM)
            stopped.proc.send_signal(signal.SIGCONT)

        stopper = threading.Thread(target=stop_mid_load)
        stopper.start()
        outcomes = load(self.stack, CALLERS, LOAD_S)
        stopper.join()

        total = sum(outcomes.values())
        self.assertGreater(total, 50, f"too little load to mean anything: {outcomes}")
        self.assertEqual(outcomes, Counter({(200, "worker"): total}),
                         f"callbacks not answered by a worker:\n{stopped.tail()}")
        try:
            code = stopped.proc.wait(10)
        except Exception:  # noqa: BLE001 - reported below
            code = None
        self.assertEqual(code, 0, f"the stopped worker's exit code:\n{stopped.tail()}")
        self.assertTrue(stopped.matching(lambda line: "drained, all replies flushed" in line),
                        stopped.tail())
        # A clean shutdown closes the connection itself: no "disconnected" warning.
        self.assertEqual(stopped.matching(lambda line: "disconnected from NATS" in line), [])
        # The other worker kept answering alone.
        self.assertIsNone(self.workers[1].proc.poll())
        self.assertEqual(self.stack.post_before(BODY), (200, "worker"))


if __name__ == "__main__":
    unittest.main()
