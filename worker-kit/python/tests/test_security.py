"""WORKER_NATS_CREDS, WORKER_NATS_NKEY, WORKER_NATS_TLS_CA, WORKER_NATS_TLS_CERT and
WORKER_NATS_TLS_KEY: the settings' rules, and a worker, as installed, connecting to a real
nats-server that requires an nkey user, then a user JWT from a creds file (operator mode),
then TLS with a client certificate. The keys are made here: the nkeys and JWTs with the nkeys
package (the kit's dependency, through nats-py[nkeys]), the CA and certificates with the
openssl command. Needs $NATS_SERVER_BIN
(else nats-server on PATH) and openssl; no gateway (the test sends the request itself)."""

import asyncio
import base64
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import unittest
from pathlib import Path

import nkeys

import openim_gateway_worker as ow
import stack

COMMAND = ow.BEFORE_SET_GROUP_MEMBER_INFO
BODY = (b'{"callbackCommand":"callbackBeforeSetGroupMemberInfoCommand","groupID":"g",'
        b'"userID":"u","nickName":null,"faceURL":null,"roleLevel":20,"ex":null}')
NAME = "secured-worker"
WORKER = f"""import openim_gateway_worker as ow
raise SystemExit(ow.run({{ow.BEFORE_SET_GROUP_MEMBER_INFO: lambda request: ow.reject(5001, "secured")}},
                        name="{NAME}"))
"""


def user_seed() -> tuple:
    """(seed, public key) of a new user nkey."""
    seed = nkeys.encode_seed(secrets.token_bytes(32), nkeys.PREFIX_BYTE_USER)
    return seed.decode(), nkeys.from_seed(bytearray(seed)).public_key.decode()


def write(directory: Path, name: str, text: str) -> str:
    path = directory / name
    path.write_text(text)
    return str(path)


class Settings(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.file = write(Path(self.dir.name), "some.pem", "x")
        self.missing = str(Path(self.dir.name) / "missing.pem")

    def tearDown(self):
        self.dir.cleanup()

    def test_unset_or_empty_means_none(self):
        for env in [{}, {name: "" for name in (ow.WORKER_NATS_CREDS, ow.WORKER_NATS_NKEY,
                                               ow.WORKER_NATS_TLS_CA, ow.WORKER_NATS_TLS_CERT,
                                               ow.WORKER_NATS_TLS_KEY)}]:
            security = ow.Settings.from_env(env).security
            self.assertEqual(security, ow.NatsSecurity())
            self.assertFalse(security.tls)

    def test_readable_files_are_kept(self):
        env = {ow.WORKER_NATS_NKEY: self.file, ow.WORKER_NATS_TLS_CA: self.file,
               ow.WORKER_NATS_TLS_CERT: self.file, ow.WORKER_NATS_TLS_KEY: self.file}
        security = ow.Settings.from_env(env).security
        self.assertEqual(security, ow.NatsSecurity(None, self.file, self.file, self.file,
                                                   self.file))
        self.assertTrue(security.tls)
        self.assertTrue(ow.NatsSecurity(tls_cert="c", tls_key="k").tls)
        self.assertEqual(ow.Settings.from_env({ow.WORKER_NATS_CREDS: self.file}).security
                         .creds_file, self.file)

    def test_every_problem_at_once(self):
        env = {ow.WORKER_NATS_CREDS: self.file, ow.WORKER_NATS_NKEY: self.file,
               ow.WORKER_NATS_TLS_CA: self.missing, ow.WORKER_NATS_TLS_CERT: self.dir.name,
               ow.WORKER_CONCURRENCY: "0"}
        with self.assertRaises(ow.SettingsError) as caught:
            ow.Settings.from_env(env)
        self.assertEqual(caught.exception.problems, [
            'WORKER_CONCURRENCY="0": must be a whole number from 1 to 10000',
            f'WORKER_NATS_TLS_CA={json.dumps(self.missing)}: must be a readable file '
            '(No such file or directory)',
            f'WORKER_NATS_TLS_CERT={json.dumps(self.dir.name)}: must be a readable file '
            '(Is a directory)',
            f'WORKER_NATS_NKEY={json.dumps(self.file)}: must not be set with '
            'WORKER_NATS_CREDS: a server accepts one way to authenticate',
            f'WORKER_NATS_TLS_CERT={json.dumps(self.dir.name)}: must come with '
            'WORKER_NATS_TLS_KEY',
        ])

    def test_cert_and_key_both_or_neither(self):
        for present, missing in [(ow.WORKER_NATS_TLS_CERT, ow.WORKER_NATS_TLS_KEY),
                                 (ow.WORKER_NATS_TLS_KEY, ow.WORKER_NATS_TLS_CERT)]:
            with self.assertRaises(ow.SettingsError) as caught:
                ow.Settings.from_env({present: self.file})
            self.assertEqual(caught.exception.problems,
                             [f'{present}={json.dumps(self.file)}: must come with {missing}'])

    def test_unreadable_file(self):
        if os.geteuid() == 0:
            self.skipTest("root reads every file")
        os.chmod(self.file, 0)
        with self.assertRaises(ow.SettingsError) as caught:
            ow.Settings.from_env({ow.WORKER_NATS_NKEY: self.file})
        self.assertIn("must be a readable file (Permission denied)", str(caught.exception))

    def test_the_variables_are_known(self):
        for name in (ow.WORKER_NATS_CREDS, ow.WORKER_NATS_NKEY, ow.WORKER_NATS_TLS_CA,
                     ow.WORKER_NATS_TLS_CERT, ow.WORKER_NATS_TLS_KEY):
            self.assertIn(name, ow.VARIABLES)
        self.assertEqual(ow.misspelled({"WORKER_NATS_TLS_CRT": "x"}, ow.VARIABLES), [
            "WORKER_NATS_TLS_CRT: not a setting of this program; did you mean "
            "WORKER_NATS_TLS_CERT?"])

    def test_security_options(self):
        seed, _public = user_seed()
        nkey = write(Path(self.dir.name), "user.nk", seed + "\n")
        self.assertEqual(ow.security_options(ow.NatsSecurity(nkey_file=nkey)),
                         {"nkeys_seed": nkey})
        self.assertEqual(ow.security_options(ow.NatsSecurity(creds_file=self.file)),
                         {"user_credentials": self.file})
        self.assertEqual(ow.security_options(ow.NatsSecurity()), {})

    def test_a_file_without_a_seed_is_refused_without_showing_it(self):
        seed, public = user_seed()
        for text in ["SUnot-a-seed", public, "hello", seed.replace("SU", "SA", 1)]:
            path = write(Path(self.dir.name), "bad.nk", text)
            with self.assertRaises(ow.SecurityError) as caught:
                ow.security_options(ow.NatsSecurity(nkey_file=path))
            self.assertIn("does not hold a user nkey seed", str(caught.exception))
            self.assertNotIn(text, str(caught.exception))

    def test_a_ca_that_is_not_pem_is_refused(self):
        with self.assertRaises(ow.SecurityError) as caught:
            ow.security_options(ow.NatsSecurity(tls_ca=self.file))
        self.assertIn(f"WORKER_NATS_TLS_CA={self.file!r}", str(caught.exception))


def openssl(*args: str, cwd: str) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE)


def make_ca(cwd: str, name: str) -> None:
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "1",
            "-subj", f"/CN={name}", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=cwd)


def make_leaf(cwd: str, ca: str, name: str, usage: str) -> None:
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}",
            cwd=cwd)
    Path(cwd, f"{name}.ext").write_text(
        f"subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage={usage}\n"
        "basicConstraints=CA:FALSE\n")
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
            "-set_serial", str(secrets.randbelow(2**63) + 1), "-days", "1", "-out",
            f"{name}.pem", "-extfile", f"{name}.ext", cwd=cwd)


class SecuredServer(unittest.TestCase):
    """A nats-server started with `config`; `worker(env)` runs the worker script with the
    installed kit and `request(**options)` sends the callback through the server."""

    config = ""

    @classmethod
    def setUpClass(cls):
        cls.nats_bin = stack.binaries_nats()
        cls.dir = tempfile.TemporaryDirectory()
        cls.path = Path(cls.dir.name)
        cls.prepare()
        cls.port = stack.free_port()
        conf = write(cls.path, "nats.conf", f"listen: 127.0.0.1:{cls.port}\n{cls.config}")
        cls.server = stack.Child([cls.nats_bin, "-c", conf], stack.clean_env())
        deadline = time.monotonic() + stack.START_TIMEOUT_S
        while not stack.Stack._accepts(cls.port):
            if time.monotonic() > deadline or cls.server.proc.poll() is not None:
                tail = cls.server.tail()
                cls.server.stop()
                cls.dir.cleanup()
                raise RuntimeError(f"nats-server did not start:\n{tail}")
            time.sleep(0.05)
        cls.script = write(cls.path, "worker.py", WORKER)
        cls.url = f"nats://127.0.0.1:{cls.port}"

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()
        cls.dir.cleanup()

    @classmethod
    def prepare(cls):
        pass

    def start(self, env: dict) -> stack.Child:
        child = stack.Child([sys.executable, self.script],
                            stack.clean_env() | {"NATS_URL": self.url} | env, self.dir.name)
        self.addCleanup(child.stop)
        return child

    def ready(self, env: dict) -> stack.Child:
        child = self.start(env)
        if child.wait_for("worker ready on") is None:
            self.fail(f"the worker did not start:\n{child.tail()}")
        return child

    def request(self, **options) -> dict:
        async def go():
            import nats
            client = await nats.connect(self.url, connect_timeout=5, allow_reconnect=False,
                                        **options)
            try:
                reply = await client.request(
                    f"openim.callback.{COMMAND}", BODY, timeout=5,
                    headers={"X-Request-Id": "sec-1", "X-Callback-Command": COMMAND,
                             "X-Timeout-Ms": "5000"})
                return json.loads(reply.data)
            finally:
                await client.close()
        return asyncio.run(go())

    def one_line_exit(self, env: dict, code: int) -> str:
        child = self.start(env)
        try:
            child.proc.wait(stack.START_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.fail(f"the worker did not stop:\n{child.tail()}")
        self.assertEqual(child.proc.returncode, code, child.tail())
        lines = child.tail().strip().splitlines()
        if code == ow.EXIT_CANNOT_RUN:
            # After the settings were read: the log's info lines come first.
            lines = [line for line in lines if " ERROR " in line]
        self.assertEqual(len(lines), 1, lines)
        return lines[0]

    @staticmethod
    def stopped_output(child: stack.Child) -> str:
        """Stops the worker and returns everything it wrote."""
        child.proc.terminate()
        child.proc.wait(10)
        return child.tail() + "\n".join(child.lines)

    def assert_not_ready(self, env: dict, log_holds: str) -> None:
        child = self.start(env)
        self.assertIsNone(child.wait_for("worker ready on", timeout=4), child.tail())
        self.assertIsNone(child.proc.poll(), "the worker keeps retrying")
        self.assertIn(log_holds, child.tail())


class NkeyUser(SecuredServer):
    @classmethod
    def prepare(cls):
        cls.seed, public = user_seed()
        cls.seed_file = write(cls.path, "user.nk", cls.seed + "\n")
        cls.config = f"authorization {{ users = [ {{ nkey: {public} }} ] }}\n"

    def test_the_worker_connects_with_the_nkey_and_answers(self):
        child = self.ready({ow.WORKER_NATS_NKEY: self.seed_file, ow.WORKER_LOG_LEVEL: "debug"})
        answer = self.request(nkeys_seed=self.seed_file)
        self.assertEqual((answer["errCode"], answer["errMsg"]), (5001, "secured"))
        self.assertNotIn(self.seed, self.stopped_output(child))

    def test_without_the_nkey_the_server_refuses(self):
        self.assert_not_ready({}, "Authorization Violation")

    def test_a_missing_nkey_file_is_a_settings_error(self):
        missing = str(self.path / "nope.nk")
        line = self.one_line_exit({ow.WORKER_NATS_NKEY: missing}, ow.EXIT_BAD_SETTINGS)
        self.assertEqual(line, f'{NAME}: WORKER_NATS_NKEY={json.dumps(missing)}: must be a '
                               'readable file (No such file or directory)')

    def test_a_file_without_a_seed_stops_the_worker(self):
        _seed, public = user_seed()
        wrong = write(self.path, "public.nk", public)
        line = self.one_line_exit({ow.WORKER_NATS_NKEY: wrong}, ow.EXIT_CANNOT_RUN)
        self.assertIn(f"cannot use the nkey file WORKER_NATS_NKEY={wrong!r}: it does not hold "
                      "a user nkey seed (SU...)", line)
        self.assertNotIn(public, line)

    def test_tls_settings_refuse_a_server_without_tls(self):
        if shutil.which("openssl") is None:
            self.skipTest("no openssl command")
        make_ca(self.dir.name, "plain-ca")
        line = self.one_line_exit({ow.WORKER_NATS_NKEY: self.seed_file,
                                   ow.WORKER_NATS_TLS_CA: str(self.path / "plain-ca.pem")},
                                  ow.EXIT_CANNOT_RUN)
        self.assertIn("WORKER_NATS_TLS_CA is set but the server does not use TLS", line)

    def test_an_nkey_with_a_creds_file_is_refused(self):
        line = self.one_line_exit({ow.WORKER_NATS_NKEY: self.seed_file,
                                   ow.WORKER_NATS_CREDS: self.seed_file}, ow.EXIT_BAD_SETTINGS)
        self.assertIn("must not be set with WORKER_NATS_CREDS", line)


def new_key(prefix: int) -> tuple:
    """(seed, public key) of a new nkey of the given role."""
    seed = nkeys.encode_seed(secrets.token_bytes(32), prefix)
    return seed.decode(), nkeys.from_seed(bytearray(seed)).public_key.decode()


def signed_jwt(signer_seed: str, subject: str, nats_claims: dict) -> str:
    """A NATS JWT (v2) for `subject`, signed with `signer_seed`."""
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signer = nkeys.from_seed(bytearray(signer_seed.encode()))
    claims = {"jti": secrets.token_hex(16).upper(), "iat": int(time.time()),
              "iss": signer.public_key.decode(), "sub": subject, "name": "kit-test",
              "nats": dict(nats_claims, version=2)}
    head = b64(json.dumps({"typ": "JWT", "alg": "ed25519-nkey"}).encode())
    body = b64(json.dumps(claims).encode())
    signature = b64(signer.sign(f"{head}.{body}".encode()))
    return f"{head}.{body}.{signature}"


class CredsFile(SecuredServer):
    """A server in operator mode (an operator, one account preloaded in memory); the worker
    has a user JWT and seed in a creds file."""

    @classmethod
    def prepare(cls):
        operator_seed, operator = new_key(nkeys.PREFIX_BYTE_OPERATOR)
        account_seed, account = new_key(nkeys.PREFIX_BYTE_ACCOUNT)
        cls.seed, user = new_key(nkeys.PREFIX_BYTE_USER)
        unlimited = {"subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
                     "wildcards": True, "conn": -1, "leaf": -1}
        operator_jwt = signed_jwt(operator_seed, operator, {"type": "operator"})
        account_jwt = signed_jwt(operator_seed, account,
                                 {"type": "account", "limits": unlimited})
        user_jwt = signed_jwt(account_seed, user, {
            "type": "user", "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1})
        cls.creds = write(cls.path, "user.creds", (
            f"-----BEGIN NATS USER JWT-----\n{user_jwt}\n------END NATS USER JWT------\n\n"
            f"-----BEGIN USER NKEY SEED-----\n{cls.seed}\n------END USER NKEY SEED------\n"))
        cls.config = (f'operator: "{operator_jwt}"\nresolver: MEMORY\n'
                      f'resolver_preload: {{ {account}: "{account_jwt}" }}\n')

    def test_the_worker_connects_with_the_creds_file_and_answers(self):
        child = self.ready({ow.WORKER_NATS_CREDS: self.creds, ow.WORKER_LOG_LEVEL: "debug"})
        answer = self.request(user_credentials=self.creds)
        self.assertEqual((answer["errCode"], answer["errMsg"]), (5001, "secured"))
        self.assertNotIn(self.seed, self.stopped_output(child))

    def test_without_the_creds_file_the_server_refuses(self):
        self.assert_not_ready({}, "Authorization Violation")


class TlsWithClientCertificate(SecuredServer):
    @classmethod
    def prepare(cls):
        if shutil.which("openssl") is None:
            raise unittest.SkipTest("no openssl command")
        cwd = cls.dir.name
        make_ca(cwd, "ca")
        make_ca(cwd, "other-ca")
        make_leaf(cwd, "ca", "server", "serverAuth")
        make_leaf(cwd, "ca", "client", "clientAuth")
        make_leaf(cwd, "other-ca", "stranger", "clientAuth")
        cls.config = (f'tls {{ cert_file: "{cwd}/server.pem", key_file: "{cwd}/server.key", '
                      f'ca_file: "{cwd}/ca.pem", verify: true, timeout: 2 }}\n')

    def files(self, ca="ca", client="client") -> dict:
        return {ow.WORKER_NATS_TLS_CA: str(self.path / f"{ca}.pem"),
                ow.WORKER_NATS_TLS_CERT: str(self.path / f"{client}.pem"),
                ow.WORKER_NATS_TLS_KEY: str(self.path / f"{client}.key")}

    def test_the_worker_connects_with_its_certificate_and_answers(self):
        child = self.ready(self.files())
        tls = ow.security_options(ow.NatsSecurity(tls_ca=str(self.path / "ca.pem"),
                                                  tls_cert=str(self.path / "client.pem"),
                                                  tls_key=str(self.path / "client.key")))["tls"]
        answer = self.request(tls=tls)
        self.assertEqual((answer["errCode"], answer["errMsg"]), (5001, "secured"))
        key = (self.path / "client.key").read_text()
        self.assertNotIn(key.splitlines()[1], self.stopped_output(child))

    def test_without_a_client_certificate_the_server_refuses(self):
        files = self.files()
        del files[ow.WORKER_NATS_TLS_CERT], files[ow.WORKER_NATS_TLS_KEY]
        child = self.start(files)
        self.assertIsNone(child.wait_for("worker ready on", timeout=4), child.tail())
        self.assertIsNone(child.proc.poll(), "the worker keeps retrying")

    def test_a_certificate_from_another_ca_is_refused(self):
        child = self.start(self.files(client="stranger"))
        self.assertIsNone(child.wait_for("worker ready on", timeout=4), child.tail())

    def test_a_server_the_ca_does_not_know_is_refused(self):
        self.assert_not_ready(self.files(ca="other-ca"), "CERTIFICATE_VERIFY_FAILED")

    def test_a_certificate_without_its_key_is_a_settings_error(self):
        files = self.files()
        del files[ow.WORKER_NATS_TLS_KEY]
        line = self.one_line_exit(files, ow.EXIT_BAD_SETTINGS)
        self.assertEqual(line, f"{NAME}: WORKER_NATS_TLS_CERT="
                               f"{json.dumps(files[ow.WORKER_NATS_TLS_CERT])}: must come with "
                               "WORKER_NATS_TLS_KEY")

    def test_a_missing_ca_is_a_settings_error(self):
        files = self.files(ca="nope")
        line = self.one_line_exit(files, ow.EXIT_BAD_SETTINGS)
        self.assertIn("WORKER_NATS_TLS_CA=", line)
        self.assertIn("must be a readable file", line)


if __name__ == "__main__":
    unittest.main()
