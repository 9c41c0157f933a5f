"""Request bodies decoded and validated the way the original (gin + Go's encoding/json) does.

Clients may rely on the error texts, so they are reproduced: decode errors use Go's wording
(``EOF``, ``json: cannot unmarshal number into Go struct field FormLogin.userName of type
string``), validation errors gin's (``Key: 'FormLogin.UserName' Error:Field validation for
'UserName' failed on the 'required' tag``, one line per field).  Decoding is lenient like Go's:
keys match case-insensitively (the last occurrence wins), unknown keys are ignored, ``null``
leaves a field empty, anything after the first JSON value is ignored.  Pure functions, no I/O.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import orjson


class BindError(ValueError):
    """The body does not fit the form; ``str(error)`` is the message the client sees."""


@dataclass(frozen=True, slots=True)
class Field:
    go_name: str
    json_name: str
    kind: type  # str or int
    required: bool = True  # the original's forms have only required fields; the history ones do not


@dataclass(frozen=True, slots=True)
class Form:
    name: str
    fields: tuple[Field, ...]
    # json name in lower case -> json name, for the fast path's "exact spelling" check
    spellings: dict[str, str] = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "spellings", {f.json_name.lower(): f.json_name for f in self.fields})


def _form(name: str, *fields: tuple[str, str, type] | tuple[str, str, type, bool]) -> Form:
    return Form(name, tuple(Field(*spec) for spec in fields))


FORM_LOGIN = _form("FormLogin", ("UserName", "userName", str), ("Password", "passWord", str))
FORM_REGISTER = _form("FormRegister", ("UserName", "userName", str), ("Password", "passWord", str))
FORM_PUSH = _form(
    "FormPush",
    ("Msg", "msg", str),
    ("ToUserId", "toUserId", str),
    ("RoomId", "roomId", int),
    ("AuthToken", "authToken", str),
)
FORM_ROOM = _form("FormRoom", ("AuthToken", "authToken", str), ("Msg", "msg", str), ("RoomId", "roomId", int))
FORM_COUNT = _form("FormCount", ("RoomId", "roomId", int))
FORM_ROOM_INFO = _form("FormRoomInfo", ("RoomId", "roomId", int))
FORM_AUTH = _form("FormCheckAuth", ("AuthToken", "authToken", str))
FORM_HISTORY = _form(
    "FormHistory",
    ("AuthToken", "authToken", str),
    ("RoomId", "roomId", int),
    ("Before", "before", str, False),
    ("Limit", "limit", int, False),
)
FORM_PRIVATE_HISTORY = _form(
    "FormPrivateHistory",
    ("AuthToken", "authToken", str),
    ("UserId", "userId", int),
    ("Before", "before", str, False),
    ("Limit", "limit", int, False),
)

_INT64 = (-(2**63), 2**63 - 1)


class _Number(str):
    """A JSON number kept as its literal, so ``1.5`` is reported as Go reports it."""


class _Object(list):
    """A JSON object as its (key, value) pairs in order, so repeated keys are all seen."""


def _go_type(value: Any) -> str:
    if isinstance(value, _Number):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, _Object):
        return "object"
    return "array"


def _decode_first_value(body: bytes) -> Any:
    text = body.decode("utf-8", errors="replace").lstrip(" \t\r\n")
    if not text:
        raise BindError("EOF")
    decoder = json.JSONDecoder(
        object_pairs_hook=_Object,
        parse_int=_Number,
        parse_float=_Number,
        parse_constant=_Number,
    )
    try:
        value, _end = decoder.raw_decode(text)
    except json.JSONDecodeError as exc:
        if exc.pos >= len(text):
            raise BindError("unexpected EOF") from exc
        char = text[exc.pos]
        where = "looking for beginning of value" if exc.pos == 0 else "in JSON input"
        raise BindError(f"invalid character {char!r} {where}") from exc
    return value


_SURROGATE = re.compile("[\ud800-\udfff]")


def _without_lone_surrogates(text: str) -> str:
    """Go decodes an unpaired ``\\ud800`` escape to U+FFFD; Python keeps it, and it cannot be encoded."""
    if not _SURROGATE.search(text):
        return text
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _convert(form: Form, field: Field, value: Any) -> tuple[Any, str | None]:
    """The Go value for one JSON value, or the error Go would report for it."""
    go_kind = "string" if field.kind is str else "int"
    place = f"Go struct field {form.name}.{field.json_name} of type {go_kind}"
    if field.kind is str:
        if isinstance(value, str) and not isinstance(value, _Number):
            return _without_lone_surrogates(value), None
        return "", f"json: cannot unmarshal {_go_type(value)} into {place}"
    if isinstance(value, _Number):
        try:
            number = int(value)
        except ValueError:
            number = None
        if number is not None and _INT64[0] <= number <= _INT64[1]:
            return number, None
        return 0, f"json: cannot unmarshal number {value} into {place}"
    return 0, f"json: cannot unmarshal {_go_type(value)} into {place}"


_KEY_END = re.compile(rb'"\s*:')


def _bind_plain(form: Form, body: bytes) -> dict[str, Any] | None:
    """The values of a body as well-formed clients send it, or None for anything else.

    A push is bound on every request, and the Go-compatible decoder below costs tens of
    microseconds.  This path takes only the plain case, where Go's leniencies cannot matter:
    valid JSON with nothing after it, one flat object, each form key spelled exactly and present
    once, every value of the field's own type and non-empty.  Anything else goes to :func:`bind`'s
    full decoder, which produces Go's answer, errors included.
    """
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    # Every key is followed by '"' and ':'; more matches than keys means a repeated key (Go
    # reports a bad first copy, a dict keeps only the last), a nested object or a ':' in a string.
    if type(document) is not dict or len(_KEY_END.findall(body)) != len(document):
        return None
    for key in document:
        spelling = form.spellings.get(key.lower())
        if spelling is not None and spelling != key:
            return None  # Go matches keys case-insensitively
    values: dict[str, Any] = {}
    for f in form.fields:
        value = document.get(f.json_name)
        if f.kind is str:
            if type(value) is not str or not value:
                return None
        elif type(value) is not int or not value or not _INT64[0] <= value <= _INT64[1]:
            return None
        values[f.go_name] = value
    return values


def bind(form: Form, body: bytes) -> dict[str, Any]:
    """Field values by Go name; raises :class:`BindError` with the original's message."""
    plain = _bind_plain(form, body)
    return plain if plain is not None else bind_as_go(form, body)


def bind_as_go(form: Form, body: bytes) -> dict[str, Any]:
    """:func:`bind` by the Go-compatible decoder alone, whatever the body."""
    document = _decode_first_value(body)
    values: dict[str, Any] = {f.go_name: ("" if f.kind is str else 0) for f in form.fields}
    if document is None:
        pass  # Go leaves the struct untouched for a top-level null
    elif not isinstance(document, _Object):
        raise BindError(f"json: cannot unmarshal {_go_type(document)} into Go value of type handler.{form.name}")
    else:
        by_key = {f.json_name.lower(): f for f in form.fields}
        first_error = None
        for key, value in document:
            field = by_key.get(key.lower())
            if field is None or value is None:
                continue
            converted, error = _convert(form, field, value)
            if error:
                first_error = first_error or error
            else:
                values[field.go_name] = converted
        if first_error:
            raise BindError(first_error)
    required = "Key: '{form}.{field}' Error:Field validation for '{field}' failed on the 'required' tag"
    missing = [
        required.format(form=form.name, field=f.go_name) for f in form.fields if f.required and not values[f.go_name]
    ]
    if missing:
        raise BindError("\n".join(missing))
    return values
