"""What a worker reads from the environment, checked before it connects."""

from __future__ import annotations

import dataclasses
import difflib
import json
import logging
import os
import re
import unicodedata
import urllib.parse
from typing import Any, Callable, Iterable, Mapping, Optional

from .protocol import DEFAULT_SUBJECT_PREFIX


NATS_URL = "NATS_URL"
WORKER_SUBJECT_PREFIX = "WORKER_SUBJECT_PREFIX"
WORKER_CONCURRENCY = "WORKER_CONCURRENCY"
WORKER_LOG_LEVEL = "WORKER_LOG_LEVEL"
WORKER_NATS_CREDS = "WORKER_NATS_CREDS"
WORKER_NATS_NKEY = "WORKER_NATS_NKEY"
WORKER_NATS_TLS_CA = "WORKER_NATS_TLS_CA"
WORKER_NATS_TLS_CERT = "WORKER_NATS_TLS_CERT"
WORKER_NATS_TLS_KEY = "WORKER_NATS_TLS_KEY"

DEFAULT_NATS_URL = "nats://127.0.0.1:4222"
DEFAULT_CONCURRENCY = 64
MAX_CONCURRENCY = 10_000
LOG_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING,
              "warning": logging.WARNING, "error": logging.ERROR}

# How often the client pings the server, so that a half-open connection is noticed quickly.
PING_INTERVAL_S = 5
# How long shutdown waits for in-flight replies and the final flush.
SHUTDOWN_GRACE_S = 5.0


NATS_SCHEMES = ("nats", "tls", "ws", "wss")


class SettingsError(Exception):
    """One or more settings that cannot be used. `problems` holds one line each, such as
    `WORKER_CONCURRENCY="x": must be a whole number from 1 to 10000`; str() joins them."""

    def __init__(self, variable: str = "", value: str = "", rule: str = "", *,
                 problems: Optional[Iterable[str]] = None) -> None:
        if problems is None:
            problems = [f"{variable}={json.dumps(value, ensure_ascii=False)}: {rule}"]
        self.problems = list(problems)
        self.variable = variable
        super().__init__("\n".join(self.problems))


def gather(*readers: Callable[[], Any]) -> list:
    """Runs every reader and returns their results; raises one SettingsError holding every
    problem they found, so that all the bad values are reported at once."""
    results, problems = [], []
    for reader in readers:
        try:
            results.append(reader())
        except SettingsError as error:
            problems.extend(error.problems)
            results.append(None)
    if problems:
        raise SettingsError(problems=problems)
    return results


def misspelled(env: Mapping[str, str], known: Iterable[str], prefix: str = "WORKER_") -> list:
    """One line for each variable starting with `prefix` that this program does not read,
    with the closest one it does read when there is one: a typo must not silently leave a
    setting at its default."""
    known = sorted(set(known))
    lines = []
    for variable in sorted(env):
        if variable.startswith(prefix) and variable not in known:
            close = difflib.get_close_matches(variable, known, n=1, cutoff=0.6)
            if close:
                hint = f"; did you mean {close[0]}?"
            else:
                reads = ", ".join(name for name in known if name.startswith(prefix))
                hint = f"; the {prefix}* variables it reads are {reads}"
            lines.append(f"{variable}: not a setting of this program{hint}")
    return lines


# Unicode's White_Space property, the set Rust's `char::is_whitespace` uses. Python's
# `str.isspace()` and `str.split()` differ from it (they also split on U+001C..U+001F), so the
# rules and the subject check use this explicit set to decide exactly as the Rust worker does.
WHITESPACE_CHARS = ("\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
                    "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000")
_WHITESPACE_RUN = re.compile("[" + re.escape(WHITESPACE_CHARS) + "]+")


def normalise_whitespace(text: str) -> str:
    """Trims and collapses every run of Unicode whitespace into one ASCII space."""
    return " ".join(part for part in _WHITESPACE_RUN.split(text) if part)


def is_valid_subject(subject: str) -> bool:
    """Dot-separated non-empty tokens without whitespace, control characters or wildcards."""
    return bool(subject) and all(
        token and all(c not in WHITESPACE_CHARS and unicodedata.category(c) != "Cc"
                      and c not in "*>" for c in token)
        for token in subject.split(".")
    )


def redact_nats_urls(value: str) -> str:
    """`value` with the user information of each URL hidden, as the gateway hides it:
    everything between the scheme and the last `@` (a password may hold an unencoded `/`,
    `?`, `#` or `,`), the user name kept when it is plainly one."""
    entries = value.split(",")
    shown = []
    index = 0
    while index < len(entries):
        # Entries without a scheme after a comma belong to the password before them when one
        # of them holds an `@`.
        following = []
        for entry in entries[index + 1:]:
            if "://" in entry:
                break
            following.append(entry)
        continuation = max((i + 1 for i, entry in enumerate(following) if "@" in entry),
                           default=0)
        url = ",".join(entries[index:index + continuation + 1])
        start = url.index("://") + 3 if "://" in url else 0
        at = url.rfind("@", start)
        if at >= 0:
            user, colon, _password = url[start:at].partition(":")
            userinfo = f"{user}:***" if colon and not any(c in user for c in "/?#") else "***"
            url = url[:start] + userinfo + url[at:]
        shown.append(url)
        index += continuation + 1
    return ",".join(shown)


def parse_nats_urls(value: str) -> list:
    """`nats://h:p`, `tls://`, `ws://`, `wss://` or a bare `host:port`; one or a comma list.
    An error shows the value with its passwords and tokens hidden."""
    rule = "must be a NATS URL such as nats://127.0.0.1:4222, or a comma-separated list of them"
    shown = redact_nats_urls(value)
    servers = []
    for entry in value.split(","):
        entry = entry.strip()
        url = entry if "://" in entry else f"nats://{entry}"
        try:
            parts = urllib.parse.urlsplit(url)
            parts.port  # raises ValueError for a port that is not a number in range
        except ValueError:
            raise SettingsError(NATS_URL, shown, rule) from None
        if not entry or parts.scheme not in NATS_SCHEMES or not parts.hostname:
            raise SettingsError(NATS_URL, shown, rule)
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            # Most likely a password with an unencoded / ? or # that moved the host.
            raise SettingsError(NATS_URL, shown, "must not have a path, query or fragment: a / ?"
                                " # or @ in a password or token must be percent-encoded"
                                " (%2F %3F %23 %40)")
        servers.append(url)
    return servers


def parse_int_setting(env: Mapping[str, str], variable: str, default: int, low: int,
                      high: int) -> int:
    """An unsigned decimal integer in low..=high (a leading `+` allowed, no spaces)."""
    value = env.get(variable)
    if value is None:
        return default
    if re.fullmatch(r"\+?[0-9]+", value) and low <= int(value) <= high:
        return int(value)
    raise SettingsError(variable, value, f"must be a whole number from {low} to {high}")


def file_setting(env: Mapping[str, str], variable: str) -> Optional[str]:
    """The path in `variable` (unset or empty: None); it must name a file this process can
    read. Only the path is ever shown, never what the file holds."""
    path = env.get(variable, "")
    if not path:
        return None
    try:
        with open(path, "rb"):
            pass
    except OSError as error:
        raise SettingsError(variable, path,
                            f"must be a readable file ({error.strerror or error})") from None
    return path


@dataclasses.dataclass(frozen=True)
class NatsSecurity:
    """How the worker proves who it is to NATS and checks the server, beyond NATS_URL: file
    paths only (the files are read when connecting)."""

    creds_file: Optional[str] = None
    nkey_file: Optional[str] = None
    tls_ca: Optional[str] = None
    tls_cert: Optional[str] = None
    tls_key: Optional[str] = None

    @property
    def tls(self) -> bool:
        """Whether TLS is required (a CA or a client certificate is set)."""
        return bool(self.tls_ca or self.tls_cert)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "NatsSecurity":
        """Reads WORKER_NATS_CREDS, WORKER_NATS_NKEY, WORKER_NATS_TLS_CA, WORKER_NATS_TLS_CERT
        and WORKER_NATS_TLS_KEY; raises one SettingsError listing every problem."""
        problems = []

        def read(variable: str) -> Optional[str]:
            try:
                return file_setting(env, variable)
            except SettingsError as error:
                problems.extend(error.problems)
                return None

        creds, nkey, ca, cert, key = (read(variable) for variable in (
            WORKER_NATS_CREDS, WORKER_NATS_NKEY, WORKER_NATS_TLS_CA, WORKER_NATS_TLS_CERT,
            WORKER_NATS_TLS_KEY))
        if env.get(WORKER_NATS_CREDS) and env.get(WORKER_NATS_NKEY):
            problems.append(str(SettingsError(
                WORKER_NATS_NKEY, env[WORKER_NATS_NKEY],
                f"must not be set with {WORKER_NATS_CREDS}: a server accepts one way to "
                "authenticate")))
        if bool(env.get(WORKER_NATS_TLS_CERT)) != bool(env.get(WORKER_NATS_TLS_KEY)):
            present, missing = (WORKER_NATS_TLS_CERT, WORKER_NATS_TLS_KEY) \
                if env.get(WORKER_NATS_TLS_CERT) else (WORKER_NATS_TLS_KEY, WORKER_NATS_TLS_CERT)
            problems.append(str(SettingsError(present, env[present], f"must come with {missing}")))
        if problems:
            raise SettingsError(problems=problems)
        return cls(creds, nkey, ca, cert, key)


@dataclasses.dataclass(frozen=True)
class Settings:
    """What every worker built on this module reads from the environment."""

    nats_servers: list
    subject_prefix: str = DEFAULT_SUBJECT_PREFIX
    concurrency: int = DEFAULT_CONCURRENCY
    log_level: int = logging.INFO
    security: NatsSecurity = NatsSecurity()

    @classmethod
    def from_env(cls, env: Optional[Mapping[str, str]] = None) -> "Settings":
        """Reads NATS_URL, WORKER_SUBJECT_PREFIX, WORKER_CONCURRENCY, WORKER_LOG_LEVEL and the
        WORKER_NATS_* files (NatsSecurity); raises one SettingsError listing every bad value."""
        env = os.environ if env is None else env

        def prefix() -> str:
            value = env.get(WORKER_SUBJECT_PREFIX, DEFAULT_SUBJECT_PREFIX)
            if not is_valid_subject(value):
                raise SettingsError(WORKER_SUBJECT_PREFIX, value,
                                    "must be a NATS subject without wildcards or whitespace, "
                                    "such as openim.callback")
            return value

        def level() -> int:
            name = env.get(WORKER_LOG_LEVEL, "").strip().lower() or "info"
            if name not in LOG_LEVELS:
                raise SettingsError(WORKER_LOG_LEVEL, env[WORKER_LOG_LEVEL],
                                    "must be one of debug, info, warn, error")
            return LOG_LEVELS[name]

        servers, subject_prefix, concurrency, log_level, security = gather(
            lambda: parse_nats_urls(env.get(NATS_URL, DEFAULT_NATS_URL)),
            prefix,
            lambda: parse_int_setting(env, WORKER_CONCURRENCY, DEFAULT_CONCURRENCY, 1,
                                      MAX_CONCURRENCY),
            level,
            lambda: NatsSecurity.from_env(env))
        return cls(servers, subject_prefix, concurrency, log_level, security)


# The variables Settings.from_env reads.
VARIABLES = (NATS_URL, WORKER_SUBJECT_PREFIX, WORKER_CONCURRENCY, WORKER_LOG_LEVEL,
             WORKER_NATS_CREDS, WORKER_NATS_NKEY, WORKER_NATS_TLS_CA, WORKER_NATS_TLS_CERT,
             WORKER_NATS_TLS_KEY)
