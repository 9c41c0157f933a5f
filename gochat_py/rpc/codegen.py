"""Regenerates the committed gRPC modules from ``proto/``: ``python -m gochat_py.rpc.codegen``.

The proto files are mapped to the virtual path ``gochat_py/rpc/`` so that the generated
``*_pb2_grpc.py`` files import their messages as ``gochat_py.rpc.<name>_pb2``.
"""

from __future__ import annotations

import sys
from pathlib import Path

PROTOS = ("logic.proto", "connect.proto")
ROOT = Path(__file__).resolve().parents[2]


def generate(out_dir: Path) -> None:
    from grpc_tools import protoc  # test extra: only needed to regenerate

    args = [
        "protoc",
        f"-Igochat_py/rpc={ROOT / 'proto'}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *[str(ROOT / "proto" / name) for name in PROTOS],
    ]
    if protoc.main(args) != 0:
        raise RuntimeError("protoc failed: " + " ".join(args))


if __name__ == "__main__":
    generate(ROOT)
    sys.exit(0)
