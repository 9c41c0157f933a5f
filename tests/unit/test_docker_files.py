"""docker/: checked by what runs here (Docker does not): the compose file as YAML, its commands
against the command line, its environment against the configuration, the Dockerfile against the tree."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from gochat_py.cli import MODULES, build_parser
from gochat_py.config import load_settings, split_host_port
from gochat_py.launcher import module_process

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker" / "docker-compose.yml"
DOCKERFILE = ROOT / "docker" / "Dockerfile"
# What the README promises: the page on 8080, the api on 7070, the websocket on 7000.
PUBLISHED = {"site": 8080, "api": 7070, "connect_websocket": 7000}
_VARIABLE = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}")


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def services() -> dict[str, dict[str, Any]]:
    return compose()["services"]


def module_services() -> dict[str, str]:
    """service name -> gochat-py module, for every service that runs ``gochat-py --module``."""
    found = {}
    for name, service in services().items():
        command = service.get("command")
        if isinstance(command, list) and command[:1] == ["gochat-py"]:
            found[name] = build_parser().parse_args(command[1:]).module
    return found


def interpolate(value: str, environ: dict[str, str]) -> str:
    """Compose's ``${VAR}`` and ``${VAR:-default}``."""
    assert "$" not in _VARIABLE.sub("", value), f"unsupported interpolation in {value!r}"
    return _VARIABLE.sub(lambda m: environ.get(m[1]) or (m[2] or ""), value)


def service_environment(name: str, host_ip: str | None = None) -> dict[str, str]:
    environ = {} if host_ip is None else {"HOST_IP": host_ip}
    return {key: interpolate(str(value), environ) for key, value in services()[name]["environment"].items()}


def published_ports(service: dict[str, Any]) -> set[tuple[int, int]]:
    return {tuple(int(p) for p in str(entry).split(":")) for entry in service.get("ports", [])}


def hostnames(name: str) -> set[str]:
    networks = services()[name].get("networks") or {}
    aliases = {alias for net in networks.values() for alias in (net or {}).get("aliases", [])}
    return {name, *aliases}


def test_every_module_is_a_service_running_a_command_gochat_py_accepts() -> None:
    modules = module_services()
    assert set(modules.values()) == set(MODULES), "one service per gochat-py module"
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["gochat-py"] == "gochat_py.cli:main"
    settings = load_settings(env="prod", environ={})
    for service, module in modules.items():
        assert service == module
        command = services()[service]["command"]
        assert command == ["gochat-py", "--module", module]
        # the end-to-end tests start each module with the same arguments (python -m gochat_py …)
        assert module_process(module, settings).argv[-2:] == command[1:]
    assert {"redis", "etcd"} <= set(services())


def test_the_ports_the_readme_promises() -> None:
    for name, service in services().items():
        expected = {(PUBLISHED[name], PUBLISHED[name])} if name in PUBLISHED else set()
        if name == "connect_tcp":
            expected = {(7001, 7001), (7002, 7002)}
        assert published_ports(service) == expected, name
    # the modules listen on those ports in the container (config/prod)
    settings = load_settings(env="prod", environ={})
    assert split_host_port(settings.site.bind) == ("0.0.0.0", 8080)
    assert split_host_port(settings.api.bind) == ("0.0.0.0", 7070)
    assert split_host_port(settings.connect_websocket.bind) == ("0.0.0.0", 7000)
    assert [split_host_port(a)[1] for a in settings.connect_tcp.bind] == [7001, 7002]
    readme = (ROOT / "README.md").read_text()
    assert "./run.sh dev 127.0.0.1" in readme and "docker/docker-compose.yml" in readme


@pytest.mark.parametrize("module", sorted(MODULES))
def test_each_module_gets_a_valid_prod_configuration_reaching_the_other_containers(module: str) -> None:
    environ = service_environment(module, host_ip="192.0.2.10")
    assert environ["GOCHAT_ENV"] == "prod"
    settings = load_settings(environ=environ)  # unknown keys or bad values would raise here
    assert settings.env == "prod"
    assert settings.redis.address == "redis:6379"
    assert settings.etcd.endpoint == "etcd:2379"
    assert split_host_port(settings.etcd.endpoint)[0] in hostnames("etcd")
    assert split_host_port(settings.redis.address)[0] in hostnames("redis")
    # a gRPC server advertises a name the other containers resolve, with the port it binds
    node = {
        "logic": settings.logic,
        "connect_websocket": settings.connect_websocket,
        "connect_tcp": settings.connect_tcp,
    }
    if module in node:
        host, port = split_host_port(node[module].rpc_advertise)
        assert host in hostnames(module)
        assert "_" not in host
        assert port == split_host_port(node[module].rpc_bind)[1]
    if module == "site":
        assert settings.site.api_url == "http://192.0.2.10:7070"
        assert settings.site.ws_url == "ws://192.0.2.10:7000/ws"
        default = load_settings(environ=service_environment("site"))
        assert default.site.api_url == "http://127.0.0.1:7070"


def test_redis_and_etcd_listen_on_the_container_network() -> None:
    etcd = " ".join(services()["etcd"]["command"])
    assert "--listen-client-urls=http://0.0.0.0:2379" in etcd
    assert "--advertise-client-urls=http://etcd:2379" in etcd
    assert "127.0.0.1" not in etcd.replace("--endpoints=http://127.0.0.1", "")
    for name in ("redis", "etcd"):
        assert services()[name]["healthcheck"]["test"][0] == "CMD"
    for name in MODULES:
        assert services()[name]["depends_on"] == {
            "redis": {"condition": "service_healthy"},
            "etcd": {"condition": "service_healthy"},
        }
    volumes = set(compose()["volumes"])
    assert {"redis-data", "etcd-data", "logic-state"} <= volumes
    assert "logic-state:/var/lib/gochat-py" in services()["logic"]["volumes"]


def test_the_dockerfile_copies_what_exists_and_installs_the_project() -> None:
    lines = [line.strip() for line in DOCKERFILE.read_text().splitlines() if line.strip() and not line.startswith("#")]
    assert lines[0] == "FROM python:3.11-slim"
    build = services()["logic"]["build"]
    assert (COMPOSE.parent / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE
    copied = []
    for line in lines:
        if line.startswith("COPY "):
            *sources, _target = line.split()[1:]
            copied += sources
    for source in copied:
        assert (ROOT / source).exists(), source
    for needed in ("pyproject.toml", "gochat_py", "config", "site"):
        assert needed in copied
    assert any("pip install" in line and " ." in line for line in lines)
    # config/prod is what GOCHAT_ENV=prod reads; its state_dir is the volume the compose file mounts
    assert load_settings(env="prod", environ={}).state_dir == "/var/lib/gochat-py"


@pytest.mark.skipif(
    shutil.which("docker", path="/usr/bin:/bin") is not None, reason="Docker is installed: dev would start it"
)
def test_run_sh_dev_without_docker_says_what_to_do() -> None:
    result = subprocess.run(
        ["bash", str(ROOT / "run.sh"), "dev", "127.0.0.1"],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 1
    assert "Docker" in result.stderr and "./run.sh local" in result.stderr
