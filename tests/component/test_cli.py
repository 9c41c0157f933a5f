"""The command line alone, no system running."""

from __future__ import annotations

import subprocess
import sys


def test_unknown_module_is_a_clear_error() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gochat_py", "--module", "nope"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "unknown module 'nope'" in result.stderr and "connect_websocket" in result.stderr
