"""worker.py as a program: --help and --version never start it; bad settings stop the start
with every problem on its own line, prefixed by the program's name, and exit code 2."""

import os
import signal
import socket
import subprocess
import sys
import unittest
from pathlib import Path

WORKER = Path(__file__).resolve().parent.parent / "worker.py"
PROGRAM = "openim-worker-example-python"


def run(*args, **env):
    # An unreachable NATS_URL: a worker that wrongly starts would keep retrying, so the
    # timeout catches it.
    clean = {key: value for key, value in os.environ.items()
             if not key.startswith(("WORKER_", "NATS_"))}
    clean.update({"NATS_URL": "nats://127.0.0.1:1"}, **env)
    return subprocess.run([sys.executable, str(WORKER), *args], env=clean, capture_output=True,
                          text=True, timeout=20, check=False)


class CommandLine(unittest.TestCase):
    def test_help_prints_the_settings_and_exits_0(self):
        result = run("--help")
        self.assertEqual(result.returncode, 0, result.stderr)
        for variable in ["NATS_URL", "WORKER_BANNED_WORDS", "WORKER_CONCURRENCY"]:
            self.assertIn(variable, result.stdout)
        self.assertEqual(result.stderr, "")

    def test_version_exits_0(self):
        result = run("--version")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertRegex(result.stdout, rf"^{PROGRAM} \d+\.\d+\.\d+ \(openim-gateway-worker ")

    def test_an_unknown_argument_exits_2(self):
        result = run("--verbose")
        self.assertEqual(result.returncode, 2)
        self.assertTrue(result.stderr.startswith(f"{PROGRAM}: unexpected argument"), result.stderr)

    def test_every_bad_setting_at_once_with_a_suggestion(self):
        result = run(WORKER_CONCURENCY="8", WORKER_CONCURRENCY="x", WORKER_LOG_LEVEL="loud",
                     WORKER_MAX_NICKNAME_CHARS="0", NATS_URL="http://a:1")
        self.assertEqual(result.returncode, 2, result.stderr)
        self.assertEqual(result.stdout, "")
        self.assertEqual(result.stderr.splitlines(), [
            f"{PROGRAM}: WORKER_CONCURENCY: not a setting of this program; did you mean "
            "WORKER_CONCURRENCY?",
            f'{PROGRAM}: NATS_URL="http://a:1": must be a NATS URL such as '
            "nats://127.0.0.1:4222, or a comma-separated list of them",
            f'{PROGRAM}: WORKER_CONCURRENCY="x": must be a whole number from 1 to 10000',
            f'{PROGRAM}: WORKER_LOG_LEVEL="loud": must be one of debug, info, warn, error',
            f'{PROGRAM}: WORKER_MAX_NICKNAME_CHARS="0": must be a whole number from 1 to 255',
        ])

    def test_the_nats_security_files_are_settings_checked_at_start(self):
        missing = str(Path(__file__).resolve().parent / "no-such-file.pem")
        result = run(WORKER_NATS_CREDS=str(WORKER), WORKER_NATS_NKEY=str(WORKER),
                     WORKER_NATS_TLS_CA=missing, WORKER_NATS_TLS_KEY=str(WORKER))
        self.assertEqual(result.returncode, 2, result.stderr)
        self.assertEqual(result.stderr.splitlines(), [
            f'{PROGRAM}: WORKER_NATS_TLS_CA="{missing}": must be a readable file '
            "(No such file or directory)",
            f'{PROGRAM}: WORKER_NATS_NKEY="{WORKER}": must not be set with WORKER_NATS_CREDS: '
            "a server accepts one way to authenticate",
            f'{PROGRAM}: WORKER_NATS_TLS_KEY="{WORKER}": must come with WORKER_NATS_TLS_CERT',
        ])
        help_text = run("--help").stdout
        for variable in ["WORKER_NATS_CREDS", "WORKER_NATS_NKEY", "WORKER_NATS_TLS_CA",
                         "WORKER_NATS_TLS_CERT", "WORKER_NATS_TLS_KEY"]:
            self.assertIn(variable, help_text)

    def test_a_misspelled_variable_alone_stops_the_start(self):
        result = run(WORKER_BANED_WORDS="x")
        self.assertEqual(result.returncode, 2)
        self.assertIn("did you mean WORKER_BANNED_WORDS?", result.stderr)
        self.assertNotIn("Traceback", result.stderr)


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ConnectionFailures(unittest.TestCase):
    def test_logged_once_per_server_and_cause_naming_the_server(self):
        first, second = closed_port(), closed_port()
        env = {key: value for key, value in os.environ.items()
               if not key.startswith(("WORKER_", "NATS_"))}
        env["NATS_URL"] = f"nats://127.0.0.1:{first},nats://bob:s3cret@127.0.0.1:{second}"
        proc = subprocess.Popen([sys.executable, str(WORKER)], env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            # nats-py tries each server again every 2 s: several attempts in 5 s.
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=20)
        self.assertEqual(proc.returncode, 0, stderr)
        self.assertEqual(stdout, "")
        warnings = [line for line in stderr.splitlines() if " WARNING " in line]
        self.assertEqual(len(warnings), 2, stderr)
        self.assertTrue(any(f"NATS server nats://127.0.0.1:{first}: ConnectionRefusedError"
                            in line for line in warnings), warnings)
        self.assertTrue(any(f"NATS server nats://bob:***@127.0.0.1:{second}: "
                            "ConnectionRefusedError" in line for line in warnings), warnings)
        self.assertNotIn("s3cret", stderr)
        self.assertNotIn("Traceback", stderr)


if __name__ == "__main__":
    unittest.main()
