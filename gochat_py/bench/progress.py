"""A one-line progress bar on stderr (redrawn in place on a terminal, a line every few seconds otherwise)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, enabled: bool = True, stream: TextIO | None = None, width: int = 30) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.tty = self.stream.isatty()
        self.width = width
        self._last = 0.0
        self._shown = False

    def update(self, phase: str, done: int, total: int, extra: str = "", force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last < (0.2 if self.tty else 2.0):
            return
        self._last = now
        fraction = min(1.0, done / total) if total else 1.0
        filled = int(fraction * self.width)
        bar = "#" * filled + "-" * (self.width - filled)
        line = f"bench {phase:<9} [{bar}] {done}/{total} {extra}"
        if self.tty:
            self.stream.write("\r" + line[:150].ljust(100))
        else:
            self.stream.write(line + "\n")
        self._shown = True
        self.stream.flush()

    def end(self) -> None:
        if self._shown and self.tty:
            self.stream.write("\n")
            self.stream.flush()
        self._shown = False
