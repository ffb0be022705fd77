"""The example worker in Python: the same rules and codes as the Rust `openim-worker-example`.

Decides callbackBeforeSetGroupMemberInfoCommand. Rules, in order; the first that fails decides
(nicknames are checked after whitespace normalisation: trim, collapse runs into one space):

1. a non-empty nickname that is only whitespace          -> reject 5003
2. a nickname containing a banned word (case-insensitive) -> reject 5001
3. a nickname longer than WORKER_MAX_NICKNAME_CHARS       -> reject 5002
4. a non-empty avatar URL that does not start https://   -> reject 5004
5. roleLevel 100 -> reject 5005; any role but 20 or 60    -> reject 5006
6. otherwise allow; if normalising changed the nickname, modify it to the normalised value.

A null field is not checked, and the answer never carries any field but a rewritten nickName.

Run: `python worker.py` (env NATS_URL, WORKER_SUBJECT_PREFIX, WORKER_BANNED_WORDS,
WORKER_MAX_NICKNAME_CHARS, WORKER_CONCURRENCY, WORKER_LOG_LEVEL, and the WORKER_NATS_CREDS,
WORKER_NATS_NKEY, WORKER_NATS_TLS_CA, WORKER_NATS_TLS_CERT, WORKER_NATS_TLS_KEY files);
`--help`, `--version`.
Bad settings, or a WORKER_* variable it does not read, stop the start with every problem on
its own line and exit code 2.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
from typing import Iterable, Mapping, Optional, Sequence, Tuple

try:
    import openim_gateway_worker as ow
    from openim_gateway_worker import models
except ImportError as missing:  # one line, not a traceback, when the kit is not installed
    sys.exit(f"openim-worker-example-python: {missing}: install the Python kit, from the "
             "repository's root: pip install -r worker-example/python/requirements.txt")

ERR_BANNED_WORD = 5001
ERR_NICKNAME_TOO_LONG = 5002
ERR_BLANK_NICKNAME = 5003
ERR_AVATAR_NOT_HTTPS = 5004
ERR_OWNER_ROLE = 5005
ERR_UNKNOWN_ROLE = 5006

ROLE_MEMBER = 20
ROLE_ADMIN = 60
ROLE_OWNER = 100

DEFAULT_BANNED_WORDS = ("admin", "official", "openim")
DEFAULT_MAX_NICKNAME_CHARS = 32
MAX_NICKNAME_CHARS_LIMIT = 255

WORKER_BANNED_WORDS = "WORKER_BANNED_WORDS"
WORKER_MAX_NICKNAME_CHARS = "WORKER_MAX_NICKNAME_CHARS"

HTTPS_PREFIX = "https://"

log = logging.getLogger("worker")


@dataclasses.dataclass(frozen=True)
class Rules:
    """The policy's settings. Banned words are stored normalised, lowercased and non-empty."""

    banned_words: Tuple[str, ...]
    max_nickname_chars: int

    @classmethod
    def new(cls, banned_words: Iterable[str] = DEFAULT_BANNED_WORDS,
            max_nickname_chars: int = DEFAULT_MAX_NICKNAME_CHARS) -> "Rules":
        words = (ow.normalise_whitespace(word).lower() for word in banned_words)
        return cls(tuple(word for word in words if word), max_nickname_chars)

    @classmethod
    def from_env(cls, env: Optional[Mapping[str, str]] = None) -> "Rules":
        """WORKER_BANNED_WORDS: comma-separated, set but empty means none.
        WORKER_MAX_NICKNAME_CHARS: an integer in 1..=255. Raises ow.SettingsError."""
        env = os.environ if env is None else env
        max_chars = ow.parse_int_setting(env, WORKER_MAX_NICKNAME_CHARS,
                                         DEFAULT_MAX_NICKNAME_CHARS, 1, MAX_NICKNAME_CHARS_LIMIT)
        words = env.get(WORKER_BANNED_WORDS)
        return cls.new(DEFAULT_BANNED_WORDS if words is None else words.split(","), max_chars)

    def banned_word_in(self, nickname: str) -> Optional[str]:
        """The first banned word the (already normalised) nickname contains."""
        lowercase = nickname.lower()
        return next((word for word in self.banned_words if word in lowercase), None)


def starts_with_https(url: str) -> bool:
    """`https://` at the start, compared ASCII case-insensitively (URL schemes are)."""
    scheme = url[:len(HTTPS_PREFIX)]
    return scheme.isascii() and scheme.lower() == HTTPS_PREFIX


def decide(rules: Rules, request: ow.SetGroupMemberInfoRequest) -> ow.Decision:
    """One request's decision; pure, so the unit tests call it directly."""
    original = request.nick_name
    nickname = None if original is None else ow.normalise_whitespace(original)

    if original is not None:
        # "" clears the nickname; only whitespace that collapses to nothing is refused.
        if nickname == "" and original != "":
            return ow.reject(ERR_BLANK_NICKNAME, "nickname must not be blank")
        # The word is not named: the message reaches the end user.
        if rules.banned_word_in(nickname) is not None:
            return ow.reject(ERR_BANNED_WORD, "nickname contains a banned word")
        if len(nickname) > rules.max_nickname_chars:
            return ow.reject(ERR_NICKNAME_TOO_LONG,
                             f"nickname is longer than {rules.max_nickname_chars} characters")

    if request.face_url is not None and request.face_url != "" \
            and not starts_with_https(request.face_url):
        return ow.reject(ERR_AVATAR_NOT_HTTPS, "avatar URL must use https")

    role = request.role_level
    if role is not None and role not in (ROLE_MEMBER, ROLE_ADMIN):
        if role == ROLE_OWNER:
            return ow.reject(ERR_OWNER_ROLE,
                             "the owner changes through a group owner transfer, not member info")
        return ow.reject(ERR_UNKNOWN_ROLE, "roleLevel must be 20 (member) or 60 (admin)")

    if nickname != original:
        return ow.modify(models.BeforeSetGroupMemberInfoCommandChanges(nickName=nickname))
    return ow.allow()


PROGRAM = "openim-worker-example-python"
VERSION = "1.0.0"
VARIABLES = ow.VARIABLES + (WORKER_BANNED_WORDS, WORKER_MAX_NICKNAME_CHARS)

USAGE = f"""{PROGRAM} {VERSION}: the example decision worker in Python, on openim-gateway-worker.

Answers callbackBeforeSetGroupMemberInfoCommand through NATS (rules: worker-example/cases.json).

Usage: python worker.py [--help | --version]

Environment:
  NATS_URL                   NATS server(s), comma-separated (default {ow.DEFAULT_NATS_URL})
  WORKER_SUBJECT_PREFIX      the gateway's subject prefix (default {ow.DEFAULT_SUBJECT_PREFIX})
  WORKER_BANNED_WORDS        comma-separated words a nickname must not contain
                             (default {",".join(DEFAULT_BANNED_WORDS)}; set but empty: none)
  WORKER_MAX_NICKNAME_CHARS  1 to {MAX_NICKNAME_CHARS_LIMIT} (default {DEFAULT_MAX_NICKNAME_CHARS})
  WORKER_CONCURRENCY         handlers at a time, 1 to {ow.MAX_CONCURRENCY}
                             (default {ow.DEFAULT_CONCURRENCY})
  WORKER_LOG_LEVEL           debug, info, warn or error (default info)
  WORKER_NATS_CREDS          a creds file (user JWT and nkey seed); not with an nkey
  WORKER_NATS_NKEY           a file holding a user nkey seed (SU...)
  WORKER_NATS_TLS_CA         a PEM CA file; set: TLS is required
  WORKER_NATS_TLS_CERT       a PEM client certificate, with WORKER_NATS_TLS_KEY
  WORKER_NATS_TLS_KEY        its PEM key, with WORKER_NATS_TLS_CERT

Exit codes: 0 after SIGTERM/SIGINT (drained), 1 when it cannot run, 2 for bad settings.
"""


def load(env: Mapping[str, str]) -> Tuple[ow.Settings, Rules]:
    """The kit's settings and the rules; one SettingsError listing every problem, a
    misspelled WORKER_* variable included."""
    problems = ow.misspelled(env, VARIABLES)
    try:
        settings, rules = ow.gather(lambda: ow.Settings.from_env(env), lambda: Rules.from_env(env))
    except ow.SettingsError as error:
        problems.extend(error.problems)
    if problems:
        raise ow.SettingsError(problems=problems)
    return settings, rules


def main(argv: Optional[Sequence[str]] = None, env: Optional[Mapping[str, str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv in (["--help"], ["-h"]):
        print(USAGE, end="")
        return ow.EXIT_OK
    if argv in (["--version"], ["-V"]):
        print(f"{PROGRAM} {VERSION} (openim-gateway-worker {ow.__version__})")
        return ow.EXIT_OK
    if argv:
        print(f"{PROGRAM}: unexpected argument {argv[0]!r}; try --help", file=sys.stderr)
        return ow.EXIT_BAD_SETTINGS
    try:
        settings, rules = load(os.environ if env is None else env)
    except ow.SettingsError as error:
        ow.print_problems(PROGRAM, error)
        return ow.EXIT_BAD_SETTINGS

    def handle(request: ow.SetGroupMemberInfoRequest) -> ow.Decision:
        return decide(rules, request)

    return ow.run({ow.BEFORE_SET_GROUP_MEMBER_INFO: handle}, name=PROGRAM, settings=settings)


if __name__ == "__main__":
    sys.exit(main())
