"""The numbers of protocol v2: its version, the error codes of replies and the close codes.

Kept apart from the message models so that a server or client can name a code without importing
pydantic, and so that docs/protocol.md has one place to be checked against (a unit test does).
"""

from __future__ import annotations

from enum import IntEnum

VERSION = 2
MAX_CID = 2**31 - 1  # fits a signed 32-bit integer in every client language
MAX_ID = 2**63 - 1  # room and user ids are int64 inside the cluster
MAX_MID_LENGTH = 64
HISTORY_LIMIT_DEFAULT, HISTORY_LIMIT_MAX = 50, 100  # as /push/history and /push/privateHistory


class ErrorCode(IntEnum):
    """``error.code`` of a reply.  A client error is a reply on a socket that stays open; clients
    treat a code they do not know as a failure of that one command."""

    BAD_REQUEST = 1  # not a command, a field missing or of the wrong type or range
    SESSION_ENDED = 2  # the token is no longer valid; a session_ended event and a close follow
    NOT_SUBSCRIBED = 3  # publish, presence or typing in a room this socket is not subscribed to
    TOO_MANY_ROOMS = 4  # subscribe past limits.rooms
    RATE_LIMITED = 5  # publish or send faster than limits.publish_rate / publish_burst
    TOO_LONG = 6  # msg longer than limits.message_length characters
    UNAVAILABLE = 7  # the server could not do it now (a backend is down); try again later
    UNKNOWN_COMMAND = 8  # cmd names no command of this version


# Websocket close codes (RFC 6455 §7.4.1).  TCP has none: the server closes the connection, after
# a session_ended event when there is still something to say.
CLOSE_GOING_AWAY = 1001  # the server shuts down; reconnect (to another node)
CLOSE_POLICY = 1008  # refused hello or join, bad token, no hello in time, too slow, logged out, flooding
CLOSE_TOO_BIG = 1009  # a frame over limits.frame_size
CLOSE_TRY_AGAIN = 1013  # the server cannot check the token now; reconnect later

# ``reason`` of a gap event: why the backlog after ``since`` is incomplete.
GAP_UNKNOWN = "unknown"  # since is not an id of ours
GAP_TOO_OLD = "too_old"  # more was missed than the server keeps
