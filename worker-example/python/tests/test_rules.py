"""The rules of worker.py: the shared case table, then each rule on its own."""

import json
import sys
import unittest
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import openim_gateway_worker as ow  # noqa: E402
import worker  # noqa: E402

EXAMPLE = HERE.parent.parent
CASES = json.loads((EXAMPLE / "cases.json").read_text("utf-8"))
FIXTURES = EXAMPLE.parent / "fixtures" / "openim"


def case_payload(case: dict) -> bytes:
    if "fixture" in case:
        return (FIXTURES / case["fixture"]).read_bytes()
    if "raw_body" in case:
        return case["raw_body"].encode()
    return json.dumps(case["body"]).encode()


def request(**fields) -> ow.SetGroupMemberInfoRequest:
    return ow.SetGroupMemberInfoRequest("callbackBeforeSetGroupMemberInfoCommand", "3316849202",
                                        "5427181639", **fields)


def answer(rules: worker.Rules, **fields) -> dict:
    return worker.decide(rules, request(**fields)).to_dict()


ALLOW = {"actionCode": 0, "errCode": 0, "errMsg": "", "errDlt": "", "nextCode": 0}


def rejected(code: int, msg: str) -> dict:
    return {"actionCode": 0, "errCode": code, "errMsg": msg, "errDlt": "", "nextCode": 1}


class CaseTable(unittest.IsolatedAsyncioTestCase):
    """Every case of worker-example/cases.json, decided without NATS: the worker's own reply
    must be the answer the gateway passes on (or a 400 service error where the table says)."""

    async def test_every_case_of_the_shared_table(self):
        count = 0
        for suite in CASES["suites"]:
            rules = worker.Rules.from_env(suite["env"])
            for case in suite["cases"]:
                count += 1
                with self.subTest(suite=suite["name"], case=case["name"]):
                    reply = await ow.respond(lambda r: worker.decide(rules, r),
                                             ow.SetGroupMemberInfoRequest.from_json,
                                             case_payload(case))
                    expect = case["expect"]
                    if "worker_service_error_code" in expect:
                        self.assertEqual(reply.body, b"")
                        self.assertEqual(reply.headers[ow.HEADER_SERVICE_ERROR_CODE],
                                         expect["worker_service_error_code"])
                        self.assertTrue(reply.headers[ow.HEADER_SERVICE_ERROR]
                                        .startswith("bad request: "))
                    else:
                        self.assertIsNone(reply.headers)
                        self.assertEqual(json.loads(reply.body), expect["answer"])
        self.assertGreater(count, 50)


class Rules(unittest.TestCase):
    def setUp(self):
        self.rules = worker.Rules.new()

    def test_defaults(self):
        self.assertEqual(worker.Rules.from_env({}), worker.Rules(("admin", "official", "openim"), 32))

    def test_blank_nicknames_are_refused_but_empty_clears(self):
        for nickname in [" ", "\t", "\n\r\n", "\u00a0", "\u3000\u3000", "\u2003\u2028", "\x85"]:
            self.assertEqual(answer(self.rules, nick_name=nickname),
                             rejected(5003, "nickname must not be blank"), repr(nickname))
        self.assertEqual(answer(self.rules, nick_name=""), ALLOW)

    def test_null_fields_are_not_checked(self):
        self.assertEqual(answer(self.rules), ALLOW)

    def test_normalise_whitespace(self):
        for text, expected in [("", ""), ("  Alice  ", "Alice"), ("Alice\t\nBob", "Alice Bob"),
                               ("\u3000李\u3000\u3000雷\u00a0", "李 雷"), ("a\u200bb", "a\u200bb"),
                               ("a\ufeffb", "a\ufeffb"), ("a\x1fb", "a\x1fb"), ("   ", "")]:
            self.assertEqual(ow.normalise_whitespace(text), expected, repr(text))

    def test_rewrite_carries_only_the_nickname(self):
        self.assertEqual(answer(self.rules, nick_name=" Bob ", face_url="https://x/b.png",
                                role_level=60, ex="{}"), dict(ALLOW, nickName="Bob"))

    def test_banned_words_any_case_anywhere(self):
        for nickname in ["admin", "ADMIN", "the aDmIn team", "superadministrator", "OpenIM fan"]:
            self.assertEqual(answer(self.rules, nick_name=nickname),
                             rejected(5001, "nickname contains a banned word"), nickname)

    def test_banned_words_unicode_case(self):
        rules = worker.Rules.new(["Straße", "ПРОВЕРКА"], 32)
        self.assertEqual(answer(rules, nick_name="STRAßE 1")["errCode"], 5001)
        self.assertEqual(answer(rules, nick_name="проверка")["errCode"], 5001)
        self.assertEqual(answer(rules, nick_name="Strasse"), ALLOW)

    def test_banned_word_list_from_env(self):
        rules = worker.Rules.from_env({"WORKER_BANNED_WORDS": "Big  Boss, ,spam, "})
        self.assertEqual(rules.banned_words, ("big boss", "spam"))
        self.assertEqual(worker.Rules.from_env({"WORKER_BANNED_WORDS": ""}).banned_words, ())

    def test_length_counts_characters_not_bytes(self):
        self.assertEqual(answer(self.rules, nick_name="雷" * 32), ALLOW)
        self.assertEqual(answer(self.rules, nick_name="x" * 33),
                         rejected(5002, "nickname is longer than 32 characters"))
        rules = worker.Rules.new([], 5)
        self.assertEqual(answer(rules, nick_name="abcdef"),
                         rejected(5002, "nickname is longer than 5 characters"))

    def test_avatar_must_be_https(self):
        for url in ["http://x", "ftp://x", "https:/x", "https", " https://x", "ｈttps://x"]:
            self.assertEqual(answer(self.rules, face_url=url),
                             rejected(5004, "avatar URL must use https"), url)
        for url in ["", "https://x", "HTTPS://X", "hTTpS://x"]:
            self.assertEqual(answer(self.rules, face_url=url), ALLOW, url)

    def test_roles(self):
        self.assertEqual(answer(self.rules, role_level=100), rejected(
            5005, "the owner changes through a group owner transfer, not member info"))
        for role in [0, 1, 7, -1, 99, 101, 2**31 - 1]:
            self.assertEqual(answer(self.rules, role_level=role), rejected(
                5006, "roleLevel must be 20 (member) or 60 (admin)"), role)
        for role in [20, 60]:
            self.assertEqual(answer(self.rules, role_level=role), ALLOW)

    def test_order(self):
        self.assertEqual(answer(self.rules, nick_name=" ", role_level=100)["errCode"], 5003)
        self.assertEqual(answer(self.rules, nick_name="admin" * 10)["errCode"], 5001)
        self.assertEqual(answer(self.rules, nick_name="x" * 40, face_url="http://x")["errCode"], 5002)
        self.assertEqual(answer(self.rules, face_url="http://x", role_level=7)["errCode"], 5004)

    def test_bad_max_nickname_chars_is_one_line_naming_it(self):
        for value in ["abc", "0", "256", "-1", "", " 32", "3.5", "99999999999999999999999"]:
            with self.assertRaises(ow.SettingsError) as raised:
                worker.Rules.from_env({"WORKER_MAX_NICKNAME_CHARS": value})
            self.assertEqual(str(raised.exception),
                             f"WORKER_MAX_NICKNAME_CHARS={json.dumps(value)}: "
                             "must be a whole number from 1 to 255")
        for value in ["1", "32", "255", "+32"]:
            worker.Rules.from_env({"WORKER_MAX_NICKNAME_CHARS": value})


if __name__ == "__main__":
    unittest.main()
