"""The join message a websocket (or TCP) client sends first: ``{"authToken": T, "roomId": R}``.

Decoded the lenient way Go decodes it: keys match case-insensitively, unknown keys are ignored,
a ``roomId`` of the wrong type counts as 0 (no room) and the join still goes ahead.

An optional ``since`` opts the socket in to kept messages: ids in its op-2 and op-3 frames, and
(with the id of the last message it received) the backlog since then.  A ``since`` that is not a
string is kept as :data:`BAD_SINCE`, which no id matches: the socket is told its position is
unknown, never refused for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson


class JoinError(ValueError):
    """Why a join message was refused; the text goes into the close reason and the log."""


BAD_SINCE = "?"


@dataclass(frozen=True, slots=True)
class Join:
    auth_token: str
    room_id: int
    since: str | None = None  # None: a v1 socket (no ids, no backlog)


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
    return Join(auth_token=token, room_id=int_or_zero(fields.get("roomid")), since=since_field(raw))


def since_field(raw: dict[str, Any]) -> str | None:
    """The ``since`` of a join (any spelling of the key, as Go would match it); None when absent.

    Read from the raw object, not :func:`fold_keys`: an explicit ``"since": null`` still opts in.
    """
    for key, value in raw.items():
        if key.lower() == "since":
            return value if isinstance(value, str) else BAD_SINCE
    return None
