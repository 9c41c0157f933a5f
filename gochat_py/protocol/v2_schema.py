"""The JSON Schema of protocol v2, generated from the models in v2_messages so that the published
document cannot disagree with the codec.

``python -m gochat_py.protocol.v2_schema`` writes docs/protocol-v2.schema.json (``--check`` only
compares, exit status 1 when it is stale); a unit test fails when the committed file is stale.
The document validates any one v2 message; ``#/$defs/ClientMessage`` and ``#/$defs/ServerMessage``
are the two directions.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pydantic import RootModel
from pydantic.json_schema import models_json_schema

from gochat_py.protocol.v2_messages import ClientMessage as ClientMessageType
from gochat_py.protocol.v2_messages import ServerMessage as ServerMessageType

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "docs" / "protocol-v2.schema.json"


class ClientMessage(RootModel[ClientMessageType]):
    """What a client sends: the hello first, then commands."""


class ServerMessage(RootModel[ServerMessageType]):
    """What the server sends: the welcome first, then replies and events."""


def v2_schema() -> dict[str, Any]:
    _, top = models_json_schema([(ClientMessage, "validation"), (ServerMessage, "validation")])
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "gochat protocol v2",
        "description": (
            "One message of protocol v2: a websocket text frame, or the payload of one TCP frame. "
            "The schema says exactly what this version sends; receivers ignore keys they do not know. "
            "See docs/protocol.md."
        ),
        "anyOf": [{"$ref": "#/$defs/ClientMessage"}, {"$ref": "#/$defs/ServerMessage"}],
        "$defs": top["$defs"],
    }


def render() -> str:
    return json.dumps(v2_schema(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gochat_py.protocol.v2_schema", description=__doc__)
    parser.add_argument("--check", action="store_true", help="only compare with the file; 1 when it is stale")
    parser.add_argument("--output", type=Path, default=SCHEMA_PATH, help=f"default: {SCHEMA_PATH}")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.exists() else ""
        if current != text:
            print(f"{args.output} is stale: run python -m gochat_py.protocol.v2_schema", file=sys.stderr)
            return 1
        return 0
    args.output.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
