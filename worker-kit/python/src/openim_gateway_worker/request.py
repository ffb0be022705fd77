"""Reading a request body: strict JSON, and the typed requests."""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Callable, Dict, Mapping, Optional

from .answer import INT32_MAX, INT32_MIN
from .protocol import BEFORE_SET_GROUP_MEMBER_INFO


class BadRequest(Exception):
    """The body is not the command's request. The message goes in a header: never quote the
    body in it."""


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_json(payload: bytes) -> Any:
    """Strict JSON as OpenIM writes it: UTF-8, no NaN/Infinity, nothing after the value."""
    try:
        text = payload.decode("utf-8") if isinstance(payload, (bytes, bytearray)) else payload
        return json.loads(text, parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError):
        raise BadRequest("body is not valid JSON") from None


def _field(obj: Mapping[str, Any], command: str, name: str, kind: str, required: bool) -> Any:
    if name not in obj:
        if required:
            raise BadRequest(f"body is not a {command} request (missing {name})")
        return None
    value = obj[name]
    if value is None and not required:
        return None
    if kind == "string" and isinstance(value, str):
        return value
    if kind == "int32" and isinstance(value, int) and not isinstance(value, bool) \
            and INT32_MIN <= value <= INT32_MAX:
        return value
    raise BadRequest(f"body is not a {command} request ({name} must be {kind_name(kind)})")


def kind_name(kind: str) -> str:
    return {"string": "a string", "int32": "a 32-bit integer"}[kind]


@dataclasses.dataclass(frozen=True)
class SetGroupMemberInfoRequest:
    """callbackBeforeSetGroupMemberInfoCommand. None means "not changing" (`null` in JSON);
    `""` is a value (clearing the nickname or the avatar)."""

    callback_command: str
    group_id: str
    user_id: str
    nick_name: Optional[str] = None
    face_url: Optional[str] = None
    role_level: Optional[int] = None
    ex: Optional[str] = None

    @classmethod
    def from_json(cls, obj: Any) -> "SetGroupMemberInfoRequest":
        command = BEFORE_SET_GROUP_MEMBER_INFO
        if not isinstance(obj, dict):
            raise BadRequest(f"body is not a {command} request (not a JSON object)")
        return cls(
            callback_command=_field(obj, command, "callbackCommand", "string", True),
            group_id=_field(obj, command, "groupID", "string", True),
            user_id=_field(obj, command, "userID", "string", True),
            nick_name=_field(obj, command, "nickName", "string", False),
            face_url=_field(obj, command, "faceURL", "string", False),
            role_level=_field(obj, command, "roleLevel", "int32", False),
            ex=_field(obj, command, "ex", "string", False),
        )


def json_object(obj: Any) -> Dict[str, Any]:
    """The parser for commands without a typed request: any JSON object, as a dict."""
    if not isinstance(obj, dict):
        raise BadRequest("body is not a JSON object")
    return obj


# Typed requests per command; other commands get the JSON object as a dict.
REQUEST_TYPES: Dict[str, Callable[[Any], Any]] = {
    BEFORE_SET_GROUP_MEMBER_INFO: SetGroupMemberInfoRequest.from_json,
}
