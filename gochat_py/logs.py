"""One-line, key=value log records (logfmt), so every event can be grepped and parsed.

Call sites pass fields through ``extra=kv(...)``; the formatter renders them after the message.
Nothing here runs at import time: :func:`setup_logging` is called once by the CLI.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any


def kv(**fields: Any) -> dict[str, Any]:
    """Fields for one record: ``log.info("joined", extra=kv(user_id=3, room_id=1))``."""
    return {"fields": fields}


def _render(value: Any) -> str:
    text = str(value)
    if text == "" or any(ch in text for ch in ' ="\n'):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return text


class LogfmtFormatter(logging.Formatter):
    def __init__(self, module: str) -> None:
        super().__init__()
        self.module = module

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(record.created))
        parts = [
            f"ts={stamp}.{int(record.msecs):03d}",
            f"level={record.levelname.lower()}",
            f"module={self.module}",
            f"logger={record.name}",
            f"msg={_render(record.getMessage())}",
        ]
        for key, value in getattr(record, "fields", {}).items():
            parts.append(f"{key}={_render(value)}")
        if record.exc_info:
            parts.append(f"exc={_render(self.formatException(record.exc_info))}")
        return " ".join(parts)


def setup_logging(module: str, level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(LogfmtFormatter(module))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Libraries that log a line per request or per frame stay quiet unless asked.
    for noisy in ("aiohttp.access", "websockets", "grpc", "asyncio", "aetcd", "alembic"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
