"""The join message a websocket (or TCP) client sends first: ``{"authToken": T, "roomId": R}``.

Decoded the lenient way Go decodes it: keys match case-insensitively, unknown keys are ignored,
a ``roomId`` of the wrong type counts as 0 (no room) and the join still goes ahead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson


class JoinError(ValueError):
    """Why a join message was refused; the text goes into the close reason and the log."""


@dataclass(frozen=True, slots=True)
class Join:
    auth_token: str
    room_id: int


def fold_keys(obj: dict[str, Any]) -> dict[str, Any]:
    """Lower-cased keys; of several spellings the last non-null one wins, as in Go's decoder."""
    folded: dict[str, Any] = {}
    for key, value in obj.items():
        if value is not None:
            folded[key.lower()] = value
    return folded


def int_or_zero(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def parse_join(data: bytes | str) -> Join:
    try:
        raw = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise JoinError("join message is not JSON") from exc
    if not isinstance(raw, dict):
        raise JoinError("join message is not a JSON object")
    fields = fold_keys(raw)
    token = fields.get("authtoken")
    if not isinstance(token, str) or not token:
        raise JoinError("join message has no authToken")
    return Join(auth_token=token, room_id=int_or_zero(fields.get("roomid")))
