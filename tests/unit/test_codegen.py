"""The committed gRPC modules must be exactly what protoc generates from proto/."""

from __future__ import annotations

from pathlib import Path

import pytest

from gochat_py.rpc import codegen

COMMITTED = Path(codegen.__file__).resolve().parent
GENERATED = [f"{name}{suffix}" for name in ("logic", "connect") for suffix in ("_pb2.py", "_pb2_grpc.py", "_pb2.pyi")]


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("codegen")
    codegen.generate(out)
    return out / "gochat_py" / "rpc"


@pytest.mark.parametrize("name", GENERATED)
def test_committed_grpc_code_is_up_to_date(generated: Path, name: str) -> None:
    fresh = generated / name
    assert fresh.is_file(), f"protoc did not produce {name}"
    committed = COMMITTED / name
    assert committed.is_file(), f"gochat_py/rpc/{name} is missing: run `python -m gochat_py.rpc.codegen`"
    assert fresh.read_bytes() == committed.read_bytes(), (
        f"gochat_py/rpc/{name} differs from what proto/ generates: run `python -m gochat_py.rpc.codegen`"
    )


def test_nothing_else_is_generated(generated: Path) -> None:
    assert sorted(p.name for p in generated.iterdir()) == sorted(GENERATED)
