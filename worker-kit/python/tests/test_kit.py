"""The kit, as installed: decisions, request typing, settings and the per-message protocol,
driven through a fake NATS client (no server needed)."""

import asyncio
import json
import logging
import unittest
from types import SimpleNamespace

import openim_gateway_worker as ow
from openim_gateway_worker import models

COMMAND = ow.BEFORE_SET_GROUP_MEMBER_INFO
ROLE_ONLY = (b'{"callbackCommand":"callbackBeforeSetGroupMemberInfoCommand","groupID":"g",'
             b'"userID":"u","nickName":null,"faceURL":null,"roleLevel":20,"ex":null}\n')
logging.getLogger("openim_gateway_worker").setLevel(logging.CRITICAL)


class FakeSubscription:
    def __init__(self):
        self.drained = False

    async def drain(self):
        self.drained = True


class FakeClient:
    """Records what the worker does with the connection."""

    def __init__(self):
        self.published = []
        self.subscribed = []
        self.flushes = 0

    async def publish(self, subject, payload=b"", reply="", headers=None):
        self.published.append((subject, payload, headers))

    async def subscribe(self, subject, queue="", cb=None):
        subscription = FakeSubscription()
        self.subscribed.append((subject, queue, cb, subscription))
        return subscription

    async def flush(self):
        self.flushes += 1


def message(data=ROLE_ONLY, reply="_INBOX.1", deadline_ms=None, **extra_headers):
    headers = {"X-Request-Id": "req-1", "X-Callback-Command": COMMAND, "X-Timeout-Ms": "5000"}
    if deadline_ms is not None:
        headers["X-Deadline-Unix-Ms"] = str(deadline_ms)
    headers.update(extra_headers)
    return SimpleNamespace(subject=f"openim.callback.{COMMAND}", reply=reply, data=data,
                           headers=headers)


def settings(**overrides):
    return ow.Settings(["nats://127.0.0.1:4222"], **overrides)


def make_worker(handler=lambda request: ow.allow(), client=None, **setting_overrides):
    client = client or FakeClient()
    return ow.Worker(client, settings(**setting_overrides), {COMMAND: handler}), client


class Decisions(unittest.TestCase):
    def test_allow_writes_the_five_common_fields(self):
        self.assertEqual(ow.allow().to_json(),
                         b'{"actionCode":0,"errCode":0,"errMsg":"","errDlt":"","nextCode":0}')

    def test_reject(self):
        decision = ow.reject(5001, "no")
        self.assertTrue(decision.is_reject)
        self.assertEqual(json.loads(decision.to_json()), {
            "actionCode": 0, "errCode": 5001, "errMsg": "no", "errDlt": "", "nextCode": 1})
        for bad in [0, 99, 2**31, True, "5001", 5001.0]:
            with self.assertRaises((ValueError, TypeError), msg=repr(bad)):
                ow.reject(bad, "no")

    def test_modify_drops_none_and_takes_only_a_changes_dataclass(self):
        changes = models.BeforeSetGroupMemberInfoCommandChanges(nickName="Bob", faceURL=None)
        self.assertEqual(json.loads(ow.modify(changes).to_json()), {
            "actionCode": 0, "errCode": 0, "errMsg": "", "errDlt": "", "nextCode": 0,
            "nickName": "Bob"})
        for bad in [{"nickName": "Bob"}, None, "nickName"]:
            with self.assertRaises(TypeError, msg=repr(bad)):
                ow.modify(bad)
        with self.assertRaises(TypeError):
            ow.modify(nextCode=1)

    def test_a_changes_value_of_the_wrong_shape_cannot_be_built(self):
        for fields in [{"nickName": 5}, {"roleLevel": 2**31}, {"roleLevel": True},
                       {"roleLevel": "20"}]:
            with self.assertRaises(ow.ShapeError, msg=repr(fields)):
                models.BeforeSetGroupMemberInfoCommandChanges(**fields)

    def test_no_decision_the_gateway_would_refuse_for_its_shape(self):
        for fields in [{"action_code": 1}, {"next_code": 2}, {"next_code": 1, "err_code": 99},
                       {"next_code": 1, "err_code": 5001, "fields": {"nickName": "a"}},
                       {"err_code": 2**31}, {"err_msg": 5}, {"fields": {"errCode": 1}},
                       {"next_code": True}]:
            with self.assertRaises((ValueError, TypeError), msg=repr(fields)):
                ow.Decision(**fields)

    def test_non_ascii_is_written_as_utf8(self):
        changes = models.BeforeSetGroupMemberInfoCommandChanges(nickName="李 雷")
        self.assertIn("李 雷".encode(), ow.modify(changes).to_json())


class Requests(unittest.TestCase):
    def test_typed_request(self):
        request = ow.SetGroupMemberInfoRequest.from_json(ow.parse_json(ROLE_ONLY))
        self.assertEqual(request.role_level, 20)
        self.assertIsNone(request.nick_name)

    def test_bad_bodies(self):
        for payload in [b"", b"not json", b'{"a":', b"\xff\xfe", b'{"x":NaN}', b"{} {}",
                        b"null", b"[]", b"{}", b'{"callbackCommand":"c","groupID":"g"}',
                        b'{"callbackCommand":"c","groupID":null,"userID":"u"}',
                        b'{"callbackCommand":"c","groupID":"g","userID":"u","roleLevel":"60"}',
                        b'{"callbackCommand":"c","groupID":"g","userID":"u","roleLevel":true}',
                        b'{"callbackCommand":"c","groupID":"g","userID":"u","roleLevel":60.0}',
                        b'{"callbackCommand":"c","groupID":"g","userID":"u","roleLevel":2147483648}',
                        b'{"callbackCommand":"c","groupID":"g","userID":"u","nickName":["s3cret"]}']:
            with self.subTest(payload=payload):
                with self.assertRaises(ow.BadRequest) as raised:
                    ow.SetGroupMemberInfoRequest.from_json(ow.parse_json(payload))
                self.assertNotIn("s3cret", str(raised.exception))

    def test_deadline_header(self):
        self.assertIsNone(ow.deadline_unix_ms(None))
        self.assertIsNone(ow.deadline_unix_ms({}))
        self.assertEqual(ow.deadline_unix_ms({"X-Deadline-Unix-Ms": "1732550400123"}),
                         1732550400123)
        for malformed in ["", "soon", "-1", "1.5", "99999999999999999999999"]:
            self.assertIsNone(ow.deadline_unix_ms({"X-Deadline-Unix-Ms": malformed}), malformed)
        self.assertFalse(ow.is_past(1000, 1000))
        self.assertTrue(ow.is_past(1000, 1001))


class SettingsFromEnv(unittest.TestCase):
    def test_defaults(self):
        self.assertEqual(ow.Settings.from_env({}), ow.Settings(
            ["nats://127.0.0.1:4222"], "openim.callback", 64, logging.INFO))

    def test_every_variable(self):
        parsed = ow.Settings.from_env({"NATS_URL": "nats://a:4222, tls://b:4443,c:1234",
                                       "WORKER_SUBJECT_PREFIX": "tenant42.callbacks",
                                       "WORKER_CONCURRENCY": "8", "WORKER_LOG_LEVEL": "debug"})
        self.assertEqual(parsed.nats_servers, ["nats://a:4222", "tls://b:4443", "nats://c:1234"])
        self.assertEqual((parsed.subject_prefix, parsed.concurrency, parsed.log_level),
                         ("tenant42.callbacks", 8, logging.DEBUG))

    def test_a_bad_nats_url_never_shows_its_password(self):
        for value in ["nats://bob:Hun/ter2x@h:1", "nats://bob:Hun?ter2x@h:1",
                      "nats://bob:Hun#ter2x@h:1", "nats://bob:Hun,ter2x@h:1",
                      "nats://bob:4222/ter2x@h:1", "nats://bob:Hunter2x@h:nope",
                      "nats://a:1,tls://bob:Hun@ter2x@h:x"]:
            with self.subTest(value=value):
                with self.assertRaises(ow.SettingsError) as raised:
                    ow.Settings.from_env({"NATS_URL": value})
                line = str(raised.exception)
                self.assertNotIn("Hun", line)
                self.assertNotIn("ter2x", line)
                self.assertIn("bob:***@", line)
        self.assertEqual(ow.redact_nats_urls("nats://t0k/en@h:1, nats://h:2"),
                         "nats://***@h:1, nats://h:2")

    def test_bad_values_are_one_line_naming_the_variable(self):
        for variable, value in [("NATS_URL", ""), ("NATS_URL", "http://a:4222"),
                                ("NATS_URL", "nats://a:notaport"), ("NATS_URL", "a,,b"),
                                ("WORKER_SUBJECT_PREFIX", "openim.*"),
                                ("WORKER_SUBJECT_PREFIX", "a..b"),
                                ("WORKER_SUBJECT_PREFIX", "has space"),
                                ("WORKER_CONCURRENCY", "0"), ("WORKER_LOG_LEVEL", "loud")]:
            with self.subTest(variable=variable, value=value):
                with self.assertRaises(ow.SettingsError) as raised:
                    ow.Settings.from_env({variable: value})
                line = str(raised.exception)
                self.assertTrue(line.startswith(f"{variable}={json.dumps(value)}: "),
                                line)
                self.assertNotIn("\n", line)

    def test_every_bad_value_at_once(self):
        with self.assertRaises(ow.SettingsError) as raised:
            ow.Settings.from_env({"NATS_URL": "http://a:1", "WORKER_CONCURRENCY": "x",
                                  "WORKER_LOG_LEVEL": "loud"})
        self.assertEqual([line.split("=", 1)[0] for line in raised.exception.problems],
                         ["NATS_URL", "WORKER_CONCURRENCY", "WORKER_LOG_LEVEL"])

    def test_a_misspelled_variable_gets_a_suggestion(self):
        lines = ow.misspelled({"WORKER_CONCURENCY": "8", "WORKER_LOG_LEVEL": "info",
                               "WORKER_ZZZ": "1", "HOME": "/"}, ow.VARIABLES)
        self.assertEqual(lines[0], "WORKER_CONCURENCY: not a setting of this program; "
                                   "did you mean WORKER_CONCURRENCY?")
        self.assertTrue(lines[1].startswith("WORKER_ZZZ: not a setting of this program; "), lines)
        self.assertEqual(len(lines), 2)


class RunWithBadSettings(unittest.TestCase):
    def test_exit_2_and_every_problem_prefixed_by_the_name(self):
        import contextlib
        import io
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr):
            code = ow.run({COMMAND: lambda request: ow.allow()}, name="my-worker",
                          env={"WORKER_CONCURRENCY": "0", "WORKER_SUBJECT_PREFIX": "a b"})
        self.assertEqual(code, 2)
        self.assertEqual(stderr.getvalue().splitlines(), [
            'my-worker: WORKER_SUBJECT_PREFIX="a b": must be a NATS subject without wildcards '
            "or whitespace, such as openim.callback",
            'my-worker: WORKER_CONCURRENCY="0": must be a whole number from 1 to 10000'])


class ConnectionErrors(unittest.TestCase):
    def test_logged_once_per_server_and_cause_in_30_seconds(self):
        now = [100.0]
        throttle = ow.ErrorThrottle(clock=lambda: now[0])
        refused = ConnectionRefusedError("connection refused")
        with self.assertLogs("openim_gateway_worker", "WARNING") as logged:
            self.assertTrue(throttle.report("nats://a:4222", refused))
            self.assertFalse(throttle.report("nats://a:4222", refused))
            self.assertTrue(throttle.report("nats://b:4222", refused))
            self.assertTrue(throttle.report("nats://a:4222", TimeoutError()))
            now[0] += 29.9
            self.assertFalse(throttle.report("nats://a:4222", refused))
            now[0] += 0.2
            self.assertTrue(throttle.report("nats://a:4222", refused))
        self.assertEqual(len(logged.output), 4)
        self.assertIn("NATS server nats://a:4222: ConnectionRefusedError: connection refused",
                      logged.output[0])
        self.assertIn("(and 2 more time(s) in the last 30 s)", logged.output[3])


class Protocol(unittest.IsolatedAsyncioTestCase):
    async def test_subscribes_in_the_queue_group_and_confirms_with_a_flush(self):
        worker, client = make_worker(subject_prefix="tenant.cb")
        await worker.subscribe()
        self.assertEqual([(s, q) for s, q, _, _ in client.subscribed],
                         [(f"tenant.cb.{COMMAND}", "openim-workers")])
        self.assertEqual(client.flushes, 1)

    async def test_answers_on_the_reply_subject_without_the_request_headers(self):
        worker, client = make_worker(lambda request: ow.reject(5005, "no"))
        await worker.handle(COMMAND, message(deadline_ms=ow.now_unix_ms() + 5000))
        [(subject, payload, headers)] = client.published
        self.assertEqual(subject, "_INBOX.1")
        self.assertIsNone(headers)
        self.assertEqual(json.loads(payload)["errCode"], 5005)

    async def test_skips_a_message_past_its_deadline(self):
        seen = []
        worker, client = make_worker(lambda request: seen.append(request) or ow.allow())
        await worker.handle(COMMAND, message(deadline_ms=ow.now_unix_ms() - 1))
        self.assertEqual((client.published, seen), ([], []))

    async def test_a_malformed_deadline_is_ignored(self):
        worker, client = make_worker()
        await worker.handle(COMMAND, message(deadline_ms="soon"))
        self.assertEqual(len(client.published), 1)

    async def test_skips_a_message_without_a_reply_subject(self):
        worker, client = make_worker()
        await worker.handle(COMMAND, message(reply=""))
        self.assertEqual(client.published, [])

    async def test_bad_body_gets_a_400_service_error(self):
        worker, client = make_worker()
        await worker.handle(COMMAND, message(data=b"not json"))
        [(_, payload, headers)] = client.published
        self.assertEqual(payload, b"")
        self.assertEqual(headers, {"Nats-Service-Error": "bad request: body is not valid JSON",
                                   "Nats-Service-Error-Code": "400"})

    async def test_a_raising_handler_gets_a_500_service_error(self):
        def broken(request):
            raise RuntimeError("boom\nsecret")
        worker, client = make_worker(broken)
        await worker.handle(COMMAND, message())
        [(_, payload, headers)] = client.published
        self.assertEqual(payload, b"")
        self.assertEqual(headers["Nats-Service-Error-Code"], "500")
        self.assertNotIn("secret", headers["Nats-Service-Error"])

    async def test_a_handler_returning_something_else_gets_a_500(self):
        worker, client = make_worker(lambda request: {"actionCode": 0})
        await worker.handle(COMMAND, message())
        self.assertEqual(client.published[0][2]["Nats-Service-Error-Code"], "500")

    async def test_async_handlers_are_awaited(self):
        async def handler(request):
            await asyncio.sleep(0)
            return ow.modify(
                models.BeforeSetGroupMemberInfoCommandChanges(nickName="x"))
        worker, client = make_worker(handler)
        await worker.handle(COMMAND, message())
        self.assertEqual(json.loads(client.published[0][1])["nickName"], "x")

    async def test_another_commands_changes_are_a_service_error(self):
        user_changes = models.BeforeUpdateUserInfoExCommandChanges(nickName="x")
        member_changes = models.BeforeSetGroupMemberInfoCommandChanges(nickName="x")
        cases = [(COMMAND, user_changes, ROLE_ONLY),
                 ("callbackBeforeSendSingleMsgCommand", member_changes, b'{"x":"y"}')]
        for command, changes, data in cases:
            with self.subTest(command=command):
                client = FakeClient()
                worker = ow.Worker(client, settings(),
                                   {command: lambda request, c=changes: ow.modify(c)})
                await worker.handle(command, message(data=data))
                self.assertEqual(client.published[0][1], b"")
                self.assertEqual(client.published[0][2]["Nats-Service-Error-Code"], "500")

    async def test_commands_without_a_type_get_the_json_object(self):
        client = FakeClient()
        worker = ow.Worker(client, settings(), {"callbackBeforeSendSingleMsgCommand":
                                                lambda request: ow.reject(5100, request["x"])})
        await worker.handle("callbackBeforeSendSingleMsgCommand", message(data=b'{"x":"y"}'))
        self.assertEqual(json.loads(client.published[0][1])["errMsg"], "y")

    async def test_concurrency_is_bounded_and_drain_waits_for_in_flight_messages(self):
        running, most = 0, 0
        release = asyncio.Event()

        async def slow(request):
            nonlocal running, most
            running += 1
            most = max(most, running)
            await release.wait()
            running -= 1
            return ow.allow()

        worker, client = make_worker(slow, concurrency=3)
        await worker.subscribe()
        dispatches = [asyncio.ensure_future(worker.dispatch(COMMAND, message()))
                      for _ in range(10)]
        await asyncio.sleep(0.05)
        self.assertEqual((most, len(worker.in_flight)), (3, 3))
        self.assertEqual(sum(d.done() for d in dispatches), 3)  # the others wait for a slot
        release.set()
        await asyncio.gather(*dispatches)
        self.assertTrue(await worker.drain(grace_s=2))
        self.assertEqual((most, len(client.published)), (3, 10))
        self.assertTrue(client.subscribed[0][3].drained)

    async def test_drain_gives_up_after_the_grace(self):
        async def stuck(request):
            await asyncio.Event().wait()
        worker, client = make_worker(stuck)
        await worker.dispatch(COMMAND, message())
        self.assertFalse(await worker.drain(grace_s=0.05))
        for task in list(worker.in_flight):
            task.cancel()


class FakeJsMessage:
    """A JetStream message: records how it was acknowledged."""

    def __init__(self, data=b'{"groupID":"g"}', **headers):
        self.subject = "openim.callback.callbackAfterSetGroupMemberInfoCommand"
        self.data = data
        self.headers = {"X-Request-Id": "req-1"} | headers
        self.outcome = []

    async def ack_sync(self, timeout=1.0):
        self.outcome.append("ack")

    async def nak(self, delay=None):
        self.outcome.append(("nak", delay))

    async def term(self):
        self.outcome.append("term")

    async def in_progress(self):
        self.outcome.append("working")


class AfterStreamPieces(unittest.IsolatedAsyncioTestCase):
    """The after-stream consumer's parts that need no server; the rest is tested against a
    real nats-server and gateway in ../integration."""

    AFTER = "callbackAfterSetGroupMemberInfoCommand"

    def consumer(self, handler, **options):
        return ow.AfterStreamConsumer(object(), "OPENIM_AFTER", "d", handler, **options)

    def test_names(self):
        for good in ["OPENIM_AFTER", "member-info-log", "a_b"]:
            self.assertTrue(ow.is_valid_name(good), good)
        for bad in ["", "a.b", "a b", "a*", "a>", "a/b", "a\\b", "a\tb", None]:
            self.assertFalse(ow.is_valid_name(bad), repr(bad))
        self.assertEqual(ow.parse_name_setting({}, "V", "dflt"), "dflt")
        with self.assertRaises(ow.SettingsError):
            ow.parse_name_setting({"V": "a.b"}, "V", "dflt")
        with self.assertRaises(ValueError):
            self.consumer(lambda *a: None, concurrency=0)

    def test_subjects_and_command(self):
        self.assertEqual(ow.after_subjects("p", None), [])
        self.assertEqual(ow.after_subjects("p", self.AFTER), [f"p.{self.AFTER}"])
        self.assertEqual(ow.after_subjects("p", ["a", "b"]), ["p.a", "p.b"])
        for bad in [[], ["a b"], ["a.>"]]:
            with self.assertRaises(ValueError):
                ow.after_subjects("p", bad)
        self.assertEqual(ow.after_command("p.x", {"X-Callback-Command": "y"}, "p"), "y")
        self.assertEqual(ow.after_command("p.x", {}, "p"), "x")
        config = self.consumer(lambda *a: None, commands=["a", "b"]).consumer_config()
        self.assertEqual((config.filter_subjects, config.filter_subject), (
            ["openim.callback.a", "openim.callback.b"], None))
        self.assertEqual(config.ack_policy.value, "explicit")

    async def test_ack_after_the_handler_nak_when_it_raises_term_for_a_bad_body(self):
        seen = []

        async def handler(command, body, headers):
            seen.append((command, body, headers["X-Request-Id"]))
            if body.get("fail"):
                raise RuntimeError("down")
            if body.get("refuse"):
                raise ow.BadRequest("not for me")

        consumer = self.consumer(handler, nak_delay_s=2.5)
        messages = [FakeJsMessage(), FakeJsMessage(b'{"fail":1}'), FakeJsMessage(b"not json"),
                    FakeJsMessage(b'{"refuse":1}')]
        consumer.free -= len(messages)  # as the pull loop does
        for msg in messages:
            await consumer._handle(msg)
        self.assertEqual([msg.outcome for msg in messages],
                         [["ack"], [("nak", 2.5)], ["term"], ["term"]])
        self.assertEqual(seen[0], (self.AFTER, {"groupID": "g"}, "req-1"))
        self.assertEqual((consumer.stats.acked, consumer.stats.retried, consumer.stats.refused),
                         (1, 1, 2))
        self.assertEqual(consumer.free, consumer.concurrency)

    async def test_a_long_handler_tells_the_server_it_is_still_working(self):
        async def slow(command, body, headers):
            await asyncio.sleep(0.12)
        consumer = self.consumer(slow, ack_wait_s=0.1)
        msg = FakeJsMessage()
        await consumer._handle(msg)
        self.assertEqual(msg.outcome, ["working", "working", "ack"])


if __name__ == "__main__":
    unittest.main()
