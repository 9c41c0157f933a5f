"""docker/: checked by what runs here (Docker does not): the compose file as YAML, its commands
against the command line, its environment against the configuration, the Dockerfile against the tree,
and that the one compose file suits docker-compose 1.29 as well as compose v2."""

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
DOCKERIGNORE = ROOT / ".dockerignore"
IMAGE = "gochat-py:local"
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
    """(host port, container port) of each ``[ip:]host:container`` entry."""
    found = set()
    for entry in service.get("ports", []):
        host, container = interpolate(str(entry), {}).split(":")[-2:]
        found.add((int(host), int(container)))
    return found


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
        # PUBLISH_IP picks the host address of every published port (default: all of them)
        for entry in service.get("ports", []):
            assert interpolate(str(entry), {}).startswith("0.0.0.0:"), entry
            assert interpolate(str(entry), {"PUBLISH_IP": "127.0.0.2"}).startswith("127.0.0.2:"), entry
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


def test_one_file_for_compose_1_29_and_v2() -> None:
    # docker-compose 1.29 refuses a top-level name (the project name is given by run.sh, -p), and
    # a version key would select a schema (3.x has no depends_on conditions).
    assert "name" not in compose() and "version" not in compose()
    assert set(compose()) - {"services", "volumes"} == {k for k in compose() if k.startswith("x-")}
    run_sh = (ROOT / "run.sh").read_text()
    assert '-p "${COMPOSE_PROJECT_NAME:-gochat-py}" -f docker/docker-compose.yml' in run_sh


def test_the_image_is_built_once_and_every_module_runs_it() -> None:
    built = [name for name, service in services().items() if "build" in service]
    assert built == ["logic"]
    for name in module_services():
        assert services()[name]["image"] == IMAGE, name
    # run.sh builds that tag once, then starts compose without --build
    run_sh = (ROOT / "run.sh").read_text()
    assert f"docker build -t {IMAGE} -f docker/Dockerfile ." in run_sh
    assert "--build" not in run_sh.split("dev)", 1)[1].split(";;", 1)[0]


def test_every_service_restarts_and_has_a_healthcheck() -> None:
    for name, service in services().items():
        assert service["restart"] in ("unless-stopped", "always", "on-failure"), name
        check = service["healthcheck"]
        assert check["test"][0] == "CMD", name
        assert {"interval", "timeout", "retries"} <= set(check), name


@pytest.mark.parametrize("module", sorted(MODULES))
def test_a_module_is_probed_where_it_listens_in_its_container(module: str) -> None:
    """The probe is the module's /readyz on its own [metrics] address (site: its page) under config/prod."""
    settings = load_settings(environ=service_environment(module))
    test = services()[module]["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python3", "-c"]
    url = test[4]
    host_port, path = url.split("//", 1)[1].split("/", 1)
    assert path == "readyz"
    address = settings.site.bind if module == "site" else getattr(settings.metrics, module)
    assert address, f"{module} serves nothing to probe"
    assert split_host_port(host_port) == ("127.0.0.1", split_host_port(address)[1])
    # the probe is real Python that fails on an HTTP error or no answer
    compile(test[3], "<healthcheck>", "exec")
    assert "urlopen(sys.argv[1]" in test[3]


def test_the_build_context_sends_what_the_dockerfile_copies_and_not_the_virtualenv() -> None:
    assert not (ROOT / "docker" / "Dockerfile.dockerignore").exists(), "the classic builder ignores it"
    rules = [line.strip() for line in DOCKERIGNORE.read_text().splitlines() if line.strip()[:1] not in ("", "#")]
    assert rules[0] == "*"
    kept = {rule[1:] for rule in rules if rule.startswith("!")}
    copied = [
        source
        for line in DOCKERFILE.read_text().splitlines()
        if line.startswith("COPY ")
        for source in line.split()[1:-1]
    ]
    assert set(copied) <= kept
    assert not kept & {".venv", ".git", "tests", "state"}


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose (1.29, Debian) is not installed")
def test_docker_compose_1_29_accepts_the_file() -> None:
    result = subprocess.run(
        ["docker-compose", "-p", "gochat-py", "-f", str(COMPOSE), "config", "-q"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def test_the_dependencies_layer_depends_on_pyproject_only() -> None:
    """A code change must not reinstall every wheel: only pyproject.toml is copied before that pip install."""
    lines = [line.strip() for line in DOCKERFILE.read_text().splitlines() if line.strip()[:1] not in ("", "#")]
    first_pip = next(i for i, line in enumerate(lines) if "pip install" in line)
    copied_before = [line.split()[1:-1] for line in lines[:first_pip] if line.startswith("COPY ")]
    assert copied_before == [["pyproject.toml"]]
    assert "-r /tmp/requirements.txt" in " ".join(lines[first_pip : first_pip + 4])
    assert any("pip install --no-deps -e ." in line for line in lines[first_pip + 1 :])
