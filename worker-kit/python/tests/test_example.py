"""examples/refuse_admin.py: the README shows it verbatim, and it runs, as installed, against
a real nats-server and the real gateway and refuses an "admin" nickname.

Needs the repository ($OPENIM_GATEWAY_REPO when these tests were copied out of it),
$NATS_SERVER_BIN and the gateway ($OPENIM_GATEWAY_BIN, else target/debug/openim-gateway)."""

import json
import re
import tempfile
import unittest
from pathlib import Path

import stack

COMMAND = "callbackBeforeUpdateUserInfoExCommand"


def kit() -> Path:
    root = stack.repository()
    if root is None:
        raise RuntimeError("set OPENIM_GATEWAY_REPO to the repository's root")
    return root / "worker-kit" / "python"


class ReadmeShowsTheExample(unittest.TestCase):
    def test_the_readme_snippet_is_the_example_file(self):
        readme = (kit() / "README.md").read_text("utf-8")
        blocks = re.findall(r"^```python\n(.*?)^```$", readme, re.MULTILINE | re.DOTALL)
        example = (kit() / "examples" / "refuse_admin.py").read_text("utf-8")
        self.assertIn(example, blocks, "README.md must show examples/refuse_admin.py verbatim")
        self.assertLessEqual(len(example.strip().splitlines()), 12)


class RefuseAdminAgainstTheRealGateway(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.stack = stack.Stack()
        try:
            # Run from an empty directory: the kit comes from the installed package only.
            cls.workdir = tempfile.TemporaryDirectory()
            cls.worker = cls.stack.worker(str(kit() / "examples" / "refuse_admin.py"),
                                          cwd=cls.workdir.name)
            fixture = stack.repository() / "fixtures" / "openim" / "before_update_user_info_ex.json"
            cls.request = json.loads(fixture.read_text("utf-8"))
        except BaseException:
            cls.stack.close()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.stack.close()
        cls.workdir.cleanup()

    def post(self, nickname):
        body = dict(self.request, nickName=nickname)
        return self.stack.post(COMMAND, json.dumps(body).encode())

    def test_refuses_a_nickname_containing_admin(self):
        for nickname in ["admin", "Big ADMIN 2"]:
            with self.subTest(nickname=nickname):
                status, source, answer = self.post(nickname)
                self.assertEqual((status, source), (200, "worker"))
                self.assertEqual(answer["nextCode"], 1, answer)
                self.assertEqual(answer["errCode"], 5001, answer)
                self.assertEqual(answer["errMsg"], "nickname must not contain admin")

    def test_allows_other_nicknames_and_a_null_one(self):
        for nickname in ["Alice W.", None]:
            with self.subTest(nickname=nickname):
                status, source, answer = self.post(nickname)
                self.assertEqual((status, source), (200, "worker"))
                self.assertEqual(answer["nextCode"], 0, answer)


if __name__ == "__main__":
    unittest.main()
