"""The answer a before-callback handler returns: `allow()`, `reject(code, msg)` or
`modify(changes)` with a generated changes dataclass (`models.*Changes`).

Every way of building an answer checks its shape as the gateway reads it
(docs/worker-protocol.md, "How the gateway reads a reply"): `actionCode` 0, `nextCode` 0 or 1,
a refusal's `errCode` in 100..=2147483647, strings where strings go, and a modification's
fields typed by the command's changes dataclass. A refusal carries no fields.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Dict, Mapping, Optional

from .changes import Changes

INT32_MAX = 2**31 - 1
INT32_MIN = -(2**31)
MIN_REJECT_ERR_CODE = 100
COMMON_FIELDS = ("actionCode", "errCode", "errMsg", "errDlt", "nextCode")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclasses.dataclass(frozen=True)
class Decision:
    """An OpenIM answer: the five common fields plus the command's own fields to write.
    Build it with `allow()`, `reject()` or `modify()`; a direct construction is checked too."""

    action_code: int = 0
    err_code: int = 0
    err_msg: str = ""
    err_dlt: str = ""
    next_code: int = 0
    fields: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    # The changes dataclass `modify` was given: the kit checks it is the command's.
    changes_type: Optional[type] = dataclasses.field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.action_code != 0 or not _is_int(self.action_code):
            raise ValueError("actionCode must be 0 (the gateway always sends OpenIM 0)")
        if not _is_int(self.next_code) or self.next_code not in (0, 1):
            raise ValueError("nextCode must be 0 (allow) or 1 (refuse)")
        if not _is_int(self.err_code) or not INT32_MIN <= self.err_code <= INT32_MAX:
            raise ValueError(f"errCode must be an integer in {INT32_MIN}..={INT32_MAX}")
        if not isinstance(self.err_msg, str) or not isinstance(self.err_dlt, str):
            raise TypeError("errMsg and errDlt must be strings")
        if not isinstance(self.fields, Mapping) \
                or not all(isinstance(name, str) for name in self.fields):
            raise TypeError("fields must be a mapping of OpenIM's JSON names")
        common = [name for name in self.fields
                  if name.lower() in (field.lower() for field in COMMON_FIELDS)]
        if common:
            raise ValueError(f"the fields are the command's own, not {common}")
        if self.next_code == 1:
            if self.err_code < MIN_REJECT_ERR_CODE:
                raise ValueError(f"a refusal's errCode must be an integer in "
                                 f"{MIN_REJECT_ERR_CODE}..={INT32_MAX}")
            if self.fields:
                raise ValueError("a refusal carries no fields (OpenIM gets the common ones only)")

    @property
    def is_reject(self) -> bool:
        return self.next_code == 1

    def to_dict(self) -> Dict[str, Any]:
        answer = {"actionCode": self.action_code, "errCode": self.err_code,
                  "errMsg": self.err_msg, "errDlt": self.err_dlt, "nextCode": self.next_code}
        answer.update(self.fields)
        return answer

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":")).encode()


def allow() -> Decision:
    """Let the operation through unchanged."""
    return Decision()


def reject(err_code: int, err_msg: str, err_dlt: str = "") -> Decision:
    """Refuse the operation. OpenIM shows `err_code` (at least 100) and `err_msg` to the user."""
    if not _is_int(err_code) or not MIN_REJECT_ERR_CODE <= err_code <= INT32_MAX:
        raise ValueError(f"a reject's errCode must be an integer in "
                         f"{MIN_REJECT_ERR_CODE}..={INT32_MAX}")
    if not isinstance(err_msg, str) or not isinstance(err_dlt, str):
        raise TypeError("errMsg and errDlt must be strings")
    return Decision(err_code=err_code, err_msg=err_msg, err_dlt=err_dlt, next_code=1)


def modify(changes: Changes) -> Decision:
    """Allow, writing the fields set in `changes`, an instance of the command's changes
    dataclass (`models.BeforeSetGroupMemberInfoCommandChanges(nickName="Bob")`), whose
    construction already checked every value's type and range.

    A field left as None is not sent: absent means "keep the request's value", and setting
    a field the request had `null` would add a change nobody asked for.
    """
    if not isinstance(changes, Changes):
        raise TypeError(f"modify() takes a changes dataclass from openim_gateway_worker.models "
                        f"(e.g. BeforeSetGroupMemberInfoCommandChanges), not "
                        f"{type(changes).__name__}")
    return Decision(fields=changes.to_dict(), changes_type=type(changes))
