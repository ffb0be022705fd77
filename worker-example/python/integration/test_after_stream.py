"""consume_after_stream and after_worker.py against a real nats-server with JetStream and the
real gateway with GATEWAY_AFTER_STREAM: after-callbacks posted while no worker runs are
handled once each, byte for byte and in order, by a consumer that starts later.

    cd worker-example/python && ../../.venv/bin/python -m unittest discover -s integration -t .
"""

import asyncio
import json
import logging
import signal
import sys
import time
import unittest
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import nats  # noqa: E402

import openim_gateway_worker as ow  # noqa: E402
from integration.stack import AFTER_SET_MEMBER, FIXTURE, Child, Stack, clean_env  # noqa: E402

STREAM = "OPENIM_AFTER_PY"
BODY = FIXTURE.read_bytes()
# Short, so that a message that was not acknowledged comes back within the test.
ACK_WAIT_S = 1.0
# How long a run goes on after the expected messages, to catch any delivered again.
SETTLE_S = ACK_WAIT_S + 1.0
WAIT_S = 15.0

logging.getLogger("openim_gateway_worker").setLevel(logging.CRITICAL)


def raw(data):
    return bytes(data)


class Received:
    """What a handler saw, in the order it was called."""

    def __init__(self):
        self.items = []
        self.changed = asyncio.Event()

    def handler(self, command, body, headers):
        self.items.append((command, body, headers))
        self.changed.set()

    async def wait_for(self, count, timeout=WAIT_S):
        deadline = time.monotonic() + timeout
        while len(self.items) < count:
            self.changed.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"received {len(self.items)} of {count} messages")
            try:
                await asyncio.wait_for(self.changed.wait(), remaining)
            except asyncio.TimeoutError:
                pass


class AfterStream(unittest.IsolatedAsyncioTestCase):
    def setUp(self):
        self.stack = Stack(STREAM)
        self.addCleanup(self.stack.close)

    async def asyncSetUp(self):
        self.client = await nats.connect(self.stack.nats_url)
        self.addAsyncCleanup(self.client.close)

    def post(self, count):
        return [self.stack.post_after(BODY) for _ in range(count)]

    async def run_consumer(self, durable, handler, count, settle_s=SETTLE_S, **options):
        """Runs a consumer until `count` messages were handled and `settle_s` more passed;
        returns its stats."""
        options.setdefault("ack_wait_s", ACK_WAIT_S)
        stop = asyncio.Event()
        received = Received()

        def recording(command, body, headers):
            received.handler(command, body, headers)
            return handler(command, body, headers) if handler else None

        consuming = asyncio.ensure_future(ow.consume_after_stream(
            self.client, STREAM, durable, recording, stop=stop, **options))
        try:
            await received.wait_for(count)
            await asyncio.sleep(settle_s)
        finally:
            stop.set()
            stats = await asyncio.wait_for(consuming, WAIT_S)
        return stats, received.items

    async def consumer_info(self, durable):
        return await self.client.jetstream().consumer_info(STREAM, durable)

    async def test_a_late_consumer_gets_each_stored_callback_once_byte_for_byte_in_order(self):
        sent_ids = self.post(3)
        info = await self.client.jetstream().stream_info(STREAM)
        self.assertEqual(info.state.messages, 3, "the gateway stored the three callbacks")

        stats, items = await self.run_consumer("late", None, 3, parse=raw)
        self.assertEqual([body for _, body, _ in items], [BODY] * 3, "byte for byte, once each")
        self.assertEqual([headers.get("X-Request-Id") for _, _, headers in items], sent_ids,
                         "in the order they were posted")
        self.assertEqual([command for command, _, _ in items], [AFTER_SET_MEMBER] * 3)
        self.assertEqual([headers.get("X-Callback-Command") for _, _, headers in items],
                         [AFTER_SET_MEMBER] * 3)
        self.assertEqual((stats.acked, stats.retried, stats.refused, stats.unconfirmed,
                          stats.abandoned), (3, 0, 0, 0, 0))
        consumer = await self.consumer_info("late")
        self.assertEqual((consumer.num_ack_pending, consumer.num_pending,
                          consumer.num_redelivered, consumer.ack_floor.stream_seq), (0, 0, 0, 3))

        # The same durable again: nothing new, also after the ack wait.
        stats, items = await self.run_consumer("late", None, 0, parse=raw)
        self.assertEqual(items, [], "a second run of the durable got messages again")
        self.assertEqual(stats.acked, 0)

        # A callback posted now is the only one the next run gets.
        newest = self.post(1)
        stats, items = await self.run_consumer("late", None, 1, parse=raw)
        self.assertEqual([(body, headers.get("X-Request-Id")) for _, body, headers in items],
                         [(BODY, newest[0])])

    async def test_the_body_is_parsed_json_and_commands_filter_the_subjects(self):
        self.post(2)
        _, items = await self.run_consumer("parsed", None, 2, settle_s=0.2,
                                           commands=[AFTER_SET_MEMBER])
        self.assertEqual([body for _, body, _ in items], [json.loads(BODY)] * 2)
        consumer = await self.consumer_info("parsed")
        self.assertEqual(consumer.config.filter_subject, f"openim.callback.{AFTER_SET_MEMBER}")

        # Another after-callback's subject, in the stream but with nothing stored.
        other = "callbackAfterJoinGroupCommand"
        _, items = await self.run_consumer("others", None, 0, commands=[other, "callbackAfterQuitGroupCommand"])
        self.assertEqual(items, [])
        consumer = await self.consumer_info("others")
        self.assertEqual(consumer.num_pending, 0)
        self.assertEqual(sorted(consumer.config.filter_subjects),
                         [f"openim.callback.{other}", "openim.callback.callbackAfterQuitGroupCommand"])

    async def test_a_message_whose_handler_raised_is_delivered_again_then_acknowledged(self):
        sent_ids = self.post(3)
        failed = []

        def flaky(command, body, headers):
            if headers["X-Request-Id"] == sent_ids[1] and not failed:
                failed.append(headers["X-Request-Id"])
                raise RuntimeError("the database is down")

        stats, items = await self.run_consumer("flaky", flaky, 4, parse=raw, nak_delay_s=0.2)
        ids = [headers["X-Request-Id"] for _, _, headers in items]
        self.assertEqual(ids[0], sent_ids[0])
        self.assertEqual(sorted(ids), sorted(sent_ids + [sent_ids[1]]))
        self.assertEqual((stats.acked, stats.retried), (3, 1))
        consumer = await self.consumer_info("flaky")
        self.assertEqual((consumer.num_ack_pending, consumer.num_pending), (0, 0))
        _, items = await self.run_consumer("flaky", None, 0)
        self.assertEqual(items, [])

    async def test_at_most_concurrency_handlers_run_at_once(self):
        sent_ids = self.post(6)
        running = []
        most = [0]

        async def slow(command, body, headers):
            running.append(1)
            most[0] = max(most[0], len(running))
            await asyncio.sleep(0.2)
            running.pop()

        stats, items = await self.run_consumer("bounded", slow, 6, settle_s=0.5, concurrency=2)
        self.assertEqual(most[0], 2)
        self.assertEqual([headers["X-Request-Id"] for _, _, headers in items], sent_ids)
        self.assertEqual(stats.acked, 6)

    async def test_a_stop_lets_the_running_handler_finish_and_acknowledges_it(self):
        sent_ids = self.post(3)
        stop = asyncio.Event()
        finished = []

        async def slow(command, body, headers):
            stop.set()  # the stop comes while this handler runs
            await asyncio.sleep(0.5)
            finished.append(headers["X-Request-Id"])

        stats = await asyncio.wait_for(ow.consume_after_stream(
            self.client, STREAM, "stopping", slow, stop=stop, concurrency=1,
            ack_wait_s=ACK_WAIT_S), WAIT_S)
        self.assertEqual(finished, sent_ids[:1])
        self.assertEqual((stats.acked, stats.abandoned), (1, 0))
        consumer = await self.consumer_info("stopping")
        self.assertEqual((consumer.num_ack_pending, consumer.ack_floor.stream_seq), (0, 1))
        _, items = await self.run_consumer("stopping", None, 2, parse=raw)
        self.assertEqual([headers["X-Request-Id"] for _, _, headers in items], sent_ids[1:])


class ExampleAfterWorker(unittest.TestCase):
    """after_worker.py as a program: logs each change it missed, exits 0 on SIGTERM, and a
    second start logs nothing again."""

    def setUp(self):
        self.stack = Stack(STREAM)
        self.addCleanup(self.stack.close)

    def start_worker(self):
        env = clean_env() | {"NATS_URL": self.stack.nats_url, "WORKER_AFTER_STREAM": STREAM,
                             "WORKER_AFTER_DURABLE": "example"}
        worker = Child([sys.executable, str(HERE.parent / "after_worker.py")], env)
        self.addCleanup(worker.stop, signal.SIGKILL)
        ready = worker.wait_for(lambda line: line.startswith("worker ready on stream"), WAIT_S)
        self.assertIsNotNone(ready, worker.tail())
        self.assertIn(f"openim.callback.{AFTER_SET_MEMBER}", ready)
        return worker

    def test_the_example_logs_each_missed_change_once(self):
        sent_ids = [self.stack.post_after(BODY) for _ in range(2)]
        changed = lambda line: "member info changed:" in line  # noqa: E731
        worker = self.start_worker()
        lines = worker.wait_for(changed, WAIT_S, "stderr", count=2)
        self.assertIsNotNone(lines, worker.tail())
        for line, request_id in zip(lines, sent_ids):
            self.assertIn("group='3316849202' user='5427181639' nickName='Alice'", line)
            self.assertIn(f"request_id={request_id}", line)
        self.assertEqual(worker.stop(), 0, worker.tail())

        again = self.start_worker()
        time.sleep(1.5)
        self.assertEqual(again.matching(changed), [], "the second start logged changes again")
        newest = self.stack.post_after(BODY)
        line = again.wait_for(changed, WAIT_S, "stderr")
        self.assertIsNotNone(line, again.tail())
        self.assertIn(f"request_id={newest}", line)
        self.assertEqual(again.stop(), 0, again.tail())

    def test_a_bad_stream_name_stops_the_start_with_exit_code_2(self):
        env = clean_env() | {"NATS_URL": self.stack.nats_url, "WORKER_AFTER_STREAM": "a.b"}
        worker = Child([sys.executable, str(HERE.parent / "after_worker.py")], env)
        self.assertEqual(worker.proc.wait(WAIT_S), 2)
        self.assertIn("WORKER_AFTER_STREAM", worker.tail())
        worker.stop()


if __name__ == "__main__":
    unittest.main()
