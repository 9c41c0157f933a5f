"""The HTTP API (aiohttp), wire-compatible with the original's gin routes.

Every answer is HTTP 200 with ``{"code", "data", "message"}`` and the CORS headers; ``OPTIONS``
on any path is a successful preflight.  Protected routes check the ``authToken`` from the JSON
body once (the original asked logic twice): checkAuth and logout through the session check, the
push routes inside the one logic call that does the work.

Login, register and the push routes are rate-limited per client address and per user
(:mod:`gochat_py.api.ratelimit`); ``GET /openapi.json`` serves the OpenAPI document of the API.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from gochat_py.api.forms import (
    FORM_AUTH,
    FORM_COUNT,
    FORM_HISTORY,
    FORM_LOGIN,
    FORM_PRIVATE_HISTORY,
    FORM_PUSH,
    FORM_REGISTER,
    FORM_ROOM,
    FORM_ROOM_INFO,
    BindError,
    Form,
    bind,
)
from gochat_py.api.ratelimit import LOGIN, PUSH, REGISTER, ApiLimits, too_many_requests
from gochat_py.config import ApiSettings
from gochat_py.logs import kv
from gochat_py.metrics import API_IN_FLIGHT
from gochat_py.rpc import logic_pb2 as pb
from gochat_py.rpc.client import LogicClient, RpcError
from gochat_py.rpc.push_batcher import PushBatcher

log = logging.getLogger("gochat.api")

CODE_SUCCESS = 0
CODE_FAIL = 1
CODE_SESSION_ERROR = 40000
LOGIC_SESSION_ERROR = pb.SESSION_ERROR  # logic's reply code for an unknown token
MSG_NOT_FOUND = "please check request url !"
MAX_BODY = 64 * 1024
CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Headers": "Origin, X-Requested-With, Content-Type, Accept",
    "Access-Control-Allow-Methods": "GET, OPTIONS, POST, PUT, DELETE",
}
_USER_ID = re.compile(r"^[+-]?[0-9]+$")
OPENAPI_PATH = Path(__file__).with_name("openapi.json")
# Route -> rate-limit group; the push group also counts count and getRoomInfo (each one a broadcast).
LIMITED_ROUTES = {
    "/user/login": LOGIN,
    "/user/register": REGISTER,
    "/push/push": PUSH,
    "/push/pushRoom": PUSH,
    "/push/count": PUSH,
    "/push/getRoomInfo": PUSH,
    "/push/history": PUSH,
    "/push/privateHistory": PUSH,
}
HISTORY_LIMIT_DEFAULT, HISTORY_LIMIT_MAX = 50, 100

LOGIC = web.AppKey("logic", LogicClient)
PUSHES = web.AppKey("pushes", PushBatcher)
SETTINGS = web.AppKey("settings", ApiSettings)
LIMITS = web.AppKey("limits", ApiLimits)
OPENAPI = web.AppKey("openapi", bytes)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def envelope(code: int, data: Any = None, message: str = "") -> web.Response:
    return web.Response(
        body=orjson.dumps({"code": code, "data": data, "message": message}),
        content_type="application/json",
        charset="utf-8",
    )


def fail(message: str) -> web.Response:
    return envelope(CODE_FAIL, None, message)


@web.middleware
async def cors_and_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """CORS on every answer; unknown routes and crashes become envelopes, never HTML or 5xx."""
    if request.method == "OPTIONS":
        response: web.StreamResponse = fail(MSG_NOT_FOUND)
    else:
        try:
            with API_IN_FLIGHT.track_inprogress():
                response = await handler(request)
        except (web.HTTPNotFound, web.HTTPMethodNotAllowed):
            response = fail(MSG_NOT_FOUND)
        except web.HTTPRequestEntityTooLarge:
            response = fail(f"request body too large (limit {MAX_BODY} bytes)")
        except Exception:
            log.exception("handler failed", extra=kv(path=request.path))
            response = fail("internal server error")
    response.headers.update(CORS_HEADERS)
    return response


def _client_address(request: web.Request) -> str:
    return request.app[LIMITS].client_address(request.remote, request.headers.getall("X-Forwarded-For", []))


@web.middleware
async def rate_limits(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Per client address; the per-user buckets are checked by the handlers (they read the body)."""
    group = LIMITED_ROUTES.get(request.path)
    if group is not None and request.method == "POST":
        wait = request.app[LIMITS].address_wait(group, _client_address(request), time.monotonic())
        if wait:
            return fail(too_many_requests(wait))
    return await handler(request)


def _user_limited(request: web.Request, group: str, user: str) -> web.Response | None:
    """The refusal when ``user`` (a user name or a session token) is over its limit, else None."""
    limits = request.app[LIMITS]
    if limits.exempt(_client_address(request)):
        return None
    wait = limits.user_wait(group, user, time.monotonic())
    return fail(too_many_requests(wait)) if wait else None


async def _bind(request: web.Request, form: Form) -> dict[str, Any]:
    return bind(form, await request.read())


async def _call(request: web.Request, method: str, message: Any, timeout: float | None = None) -> Any:
    return await request.app[LOGIC].call(method, message, timeout)


async def _session(request: web.Request) -> pb.CheckAuthReply | web.Response:
    """The caller's session, or the envelope to answer with (40000 for a bad token)."""
    try:
        token = (await _bind(request, FORM_AUTH))["AuthToken"]
    except BindError:
        return envelope(CODE_SESSION_ERROR, None, "Session error")
    try:
        reply = await _call(request, "CheckAuth", pb.CheckAuthRequest(auth_token=token))
    except RpcError as exc:
        return fail(f"logic unavailable: {exc}")
    if reply.code != CODE_SUCCESS or reply.user_id <= 0 or not reply.user_name:
        return envelope(CODE_SESSION_ERROR, None, "Session error")
    return reply


def protected(handler: Callable[[web.Request, pb.CheckAuthReply], Awaitable[web.Response]]) -> Handler:
    async def wrapper(request: web.Request) -> web.Response:
        session = await _session(request)
        if isinstance(session, web.Response):
            return session
        return await handler(request, session)

    return wrapper


async def _auth(request: web.Request, form: Form, method: str, success: str) -> web.Response:
    try:
        fields = await _bind(request, form)
    except BindError as exc:
        return fail(str(exc))
    if method == "Login" and (refusal := _user_limited(request, LOGIN, fields["UserName"])):
        return refusal
    try:
        auth = pb.AuthRequest(name=fields["UserName"], password=fields["Password"])
        # password hashing is slow on purpose and queues under a burst of logins: a longer deadline
        reply = await _call(request, method, auth, request.app[LOGIC].auth_timeout)
    except RpcError as exc:
        return fail(f"logic unavailable: {exc}")
    if reply.code != CODE_SUCCESS:
        return fail(reply.message)
    return envelope(CODE_SUCCESS, reply.auth_token, success)


async def login(request: web.Request) -> web.Response:
    return await _auth(request, FORM_LOGIN, "Login", "login success")


async def register(request: web.Request) -> web.Response:
    return await _auth(request, FORM_REGISTER, "Register", "register success")


@protected
async def check_auth(request: web.Request, session: pb.CheckAuthReply) -> web.Response:
    return envelope(CODE_SUCCESS, {"userId": session.user_id, "userName": session.user_name}, "auth success")


@protected
async def logout(request: web.Request, session: pb.CheckAuthReply) -> web.Response:
    token = (await _bind(request, FORM_AUTH))["AuthToken"]
    try:
        reply = await _call(request, "Logout", pb.LogoutRequest(auth_token=token))
    except RpcError as exc:
        return fail(f"logic unavailable: {exc}")
    if reply.code != CODE_SUCCESS:
        return fail("logout fail!")
    return envelope(CODE_SUCCESS, None, "logout ok!")


async def _token(request: web.Request) -> str | None:
    try:
        return (await _bind(request, FORM_AUTH))["AuthToken"]
    except BindError:
        return None


async def _refuse(request: web.Request, message: str) -> web.Response:
    """A bad request body; but an unknown token is reported first, as the original checked it first."""
    session = await _session(request)
    return session if isinstance(session, web.Response) else fail(message)


async def _relay(request: web.Request, call: Awaitable[Any], data: Any, failure: str) -> web.Response:
    """One logic call that checks the token and does the work: ``ok`` with ``data``, 40000 for a
    bad token, else the original's failure text."""
    try:
        reply = await call
    except RpcError as exc:
        log.warning("push failed", extra=kv(path=request.path, error=str(exc)))
        return fail(failure)
    if reply.code == LOGIC_SESSION_ERROR:
        return envelope(CODE_SESSION_ERROR, None, "Session error")
    if reply.code != CODE_SUCCESS:
        return fail(failure)
    return envelope(CODE_SUCCESS, data, "ok")


def session_route(form: Form) -> Callable[[Callable[..., Awaitable[web.Response]]], Handler]:
    """A protected route whose logic call checks the token itself (one RPC instead of two)."""

    def decorate(handler: Callable[[web.Request, str, dict[str, Any]], Awaitable[web.Response]]) -> Handler:
        async def wrapper(request: web.Request) -> web.Response:
            token = await _token(request)
            if token is None:
                return envelope(CODE_SESSION_ERROR, None, "Session error")
            if refusal := _user_limited(request, PUSH, token):
                return refusal
            try:
                fields = await _bind(request, form)
            except BindError as exc:
                return await _refuse(request, str(exc))
            return await handler(request, token, fields)

        return wrapper

    return decorate


def _too_long(request: web.Request, msg: str) -> str | None:
    limit = request.app[SETTINGS].max_message_length
    if len(msg) > limit:
        return f"msg is too long: {len(msg)} characters, at most {limit} are allowed"
    return None


@session_route(FORM_PUSH)
async def push(request: web.Request, token: str, fields: dict[str, Any]) -> web.Response:
    to_user = fields["ToUserId"].strip()
    if not _USER_ID.match(to_user) or not (0 < int(to_user) < 2**63):
        # The original silently sent such messages to user 0 (§12.1.9).
        return await _refuse(request, 'toUserId must be a positive integer in a string, e.g. "2"')
    if too_long := _too_long(request, fields["Msg"]):
        return await _refuse(request, too_long)
    message = pb.PushRequest(auth_token=token, to_user_id=int(to_user), room_id=fields["RoomId"], msg=fields["Msg"])
    return await _relay(request, request.app[PUSHES].submit(pb.PushItem(push=message)), None, "rpc push msg fail!")


@session_route(FORM_ROOM)
async def push_room(request: web.Request, token: str, fields: dict[str, Any]) -> web.Response:
    if too_long := _too_long(request, fields["Msg"]):
        return await _refuse(request, too_long)
    message = pb.PushRoomRequest(auth_token=token, room_id=fields["RoomId"], msg=fields["Msg"])
    reply = request.app[PUSHES].submit(pb.PushItem(push_room=message))
    return await _relay(request, reply, "", "rpc push room msg fail!")


@session_route(FORM_COUNT)
async def count(request: web.Request, token: str, fields: dict[str, Any]) -> web.Response:
    message = pb.RoomRequest(auth_token=token, room_id=fields["RoomId"])
    return await _relay(request, _call(request, "Count", message), "", "rpc get room count fail!")


@session_route(FORM_ROOM_INFO)
async def room_info(request: web.Request, token: str, fields: dict[str, Any]) -> web.Response:
    message = pb.RoomRequest(auth_token=token, room_id=fields["RoomId"])
    return await _relay(request, _call(request, "GetRoomInfo", message), "", "rpc get room info fail!")


async def _history(request: web.Request, message: pb.HistoryRequest, fields: dict[str, Any]) -> web.Response:
    """A page of kept messages: ``data`` is ``{"messages": [...], "more": bool}``, newest first."""
    limit = fields["Limit"] or HISTORY_LIMIT_DEFAULT
    if not 0 < limit <= HISTORY_LIMIT_MAX:
        return await _refuse(request, f"limit must be from 1 to {HISTORY_LIMIT_MAX}")
    message.limit, message.before = limit, fields["Before"]
    try:
        reply = await _call(request, "History", message)
    except RpcError as exc:
        log.warning("history failed", extra=kv(path=request.path, error=str(exc)))
        return fail("rpc history fail!")
    if reply.code == LOGIC_SESSION_ERROR:
        return envelope(CODE_SESSION_ERROR, None, "Session error")
    if reply.code != CODE_SUCCESS:
        return fail(reply.message)
    # the bodies are JSON objects already: spliced in as they are, not parsed and encoded again
    messages = orjson.Fragment(b"[" + b",".join(reply.messages) + b"]")
    return envelope(CODE_SUCCESS, {"messages": messages, "more": reply.more}, "ok")


@session_route(FORM_HISTORY)
async def history(request: web.Request, token: str, fields: dict[str, Any]) -> web.Response:
    if fields["RoomId"] <= 0:
        return await _refuse(request, "roomId must be a positive integer")
    return await _history(request, pb.HistoryRequest(auth_token=token, room_id=fields["RoomId"]), fields)


@session_route(FORM_PRIVATE_HISTORY)
async def private_history(request: web.Request, token: str, fields: dict[str, Any]) -> web.Response:
    if fields["UserId"] <= 0:
        return await _refuse(request, "userId must be a positive integer")
    return await _history(request, pb.HistoryRequest(auth_token=token, user_id=fields["UserId"]), fields)


async def openapi(request: web.Request) -> web.Response:
    return web.Response(body=request.app[OPENAPI], content_type="application/json", charset="utf-8")


def create_app(logic: LogicClient, settings: ApiSettings | None = None) -> web.Application:
    settings = settings or ApiSettings()
    app = web.Application(middlewares=[cors_and_errors, rate_limits], client_max_size=MAX_BODY)
    app[LOGIC] = logic
    app[PUSHES] = PushBatcher(logic)
    app[SETTINGS] = settings
    app[LIMITS] = ApiLimits(settings)
    app[OPENAPI] = OPENAPI_PATH.read_bytes()
    app.router.add_get("/openapi.json", openapi, allow_head=False)
    app.router.add_post("/user/login", login)
    app.router.add_post("/user/register", register)
    app.router.add_post("/user/checkAuth", check_auth)
    app.router.add_post("/user/logout", logout)
    app.router.add_post("/push/push", push)
    app.router.add_post("/push/pushRoom", push_room)
    app.router.add_post("/push/count", count)
    app.router.add_post("/push/getRoomInfo", room_info)
    app.router.add_post("/push/history", history)
    app.router.add_post("/push/privateHistory", private_history)
    return app
