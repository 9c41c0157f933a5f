#!/usr/bin/env bash
# gochat-py, one entry point for people and CI.
#
#   ./run.sh local          start the whole system on this machine, restarting what dies (page: http://127.0.0.1:8080)
#   ./run.sh test [ARGS]    run the whole test suite (ARGS go to pytest)
#   ./run.sh install        only install what is missing (Debian packages, Python virtualenv)
#   ./run.sh dev [IP]       build and start everything in Docker; IP: the address browsers use (127.0.0.1)
#
# Installs what it needs on first use: redis-server, etcd (for test also chromium, tmux, postgresql) from
# Debian (as root), and the project with its test extras into a virtualenv (.venv, or $GOCHAT_VENV).
set -euo pipefail
cd "$(dirname "$0")"
VENV=${GOCHAT_VENV:-.venv}

say() { printf 'run.sh: %s\n' "$*" >&2; }

apt_install() {
    if [ "$(id -u)" != 0 ]; then
        say "missing Debian packages: $*; install them with: sudo apt-get install -y $*"
        exit 1
    fi
    say "installing Debian packages: $*"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

ensure_system_packages() {
    local missing=()
    command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
    command -v etcd >/dev/null 2>&1 || missing+=(etcd-server)
    command -v python3 >/dev/null 2>&1 || missing+=(python3)
    command -v ip >/dev/null 2>&1 || missing+=(iproute2)  # the multi-host tests' network namespaces
    if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then missing+=(python3-venv); fi
    if [ ${#missing[@]} -gt 0 ]; then apt_install "${missing[@]}"; fi
}

# The browser tests drive Debian's Chromium (a browser cannot be downloaded by Playwright here).
ensure_browser() {
    local missing=()
    [ -x /usr/bin/chromium ] || missing+=(chromium)
    command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
    if [ ${#missing[@]} -gt 0 ]; then apt_install "${missing[@]}"; fi
}

# The terminal chat's tests drive it in tmux, as a person types.
ensure_terminal() {
    command -v tmux >/dev/null 2>&1 || apt_install tmux
}

# The database tests start throwaway PostgreSQL servers of their own (tests/postgres.py) with
# Debian's server binaries; the package's own cluster is not used.
ensure_postgresql() {
    if ! compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; then apt_install postgresql; fi
}

ensure_venv() {
    if [ ! -x "$VENV/bin/python" ]; then
        say "creating virtualenv $VENV"
        python3 -m venv "$VENV"
    fi
    local stamp="$VENV/.gochat-installed"
    local want
    want=$(sha256sum pyproject.toml | cut -d' ' -f1)
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
        say "installing gochat-py and its test extras into $VENV"
        "$VENV/bin/python" -m pip install -q --upgrade pip
        "$VENV/bin/python" -m pip install -q -e ".[test]"
        echo "$want" >"$stamp"
    fi
}

command=${1:-help}
[ $# -gt 0 ] && shift
case "$command" in
    local)
        ensure_system_packages
        ensure_venv
        exec "$VENV/bin/gochat-py" up "$@"
        ;;
    test)
        ensure_system_packages
        ensure_browser
        ensure_terminal
        ensure_postgresql
        ensure_venv
        exec "$VENV/bin/python" -m pytest "$@"
        ;;
    install)
        ensure_system_packages
        ensure_venv
        ;;
    dev)
        # As the original's run.sh: everything in Docker, in the background. Works with compose v2
        # (docker compose) and Debian's docker-compose 1.29; the image is built once, here.
        host_ip=${1:-127.0.0.1}
        if ! command -v docker >/dev/null 2>&1; then
            say "dev needs Docker with compose (docker compose, or docker-compose); without Docker use: ./run.sh local"
            exit 1
        fi
        if docker compose version >/dev/null 2>&1; then
            compose=(docker compose)
        elif command -v docker-compose >/dev/null 2>&1; then
            compose=(docker-compose)
        else
            say "dev needs compose: docker compose (the plugin) or docker-compose (Debian: apt-get install docker-compose); without Docker use: ./run.sh local"
            exit 1
        fi
        compose+=(-p "${COMPOSE_PROJECT_NAME:-gochat-py}" -f docker/docker-compose.yml)
        say "building the image gochat-py:local (docker/Dockerfile)"
        docker build -t gochat-py:local -f docker/Dockerfile .
        say "starting gochat-py in Docker (${compose[*]}), HOST_IP=$host_ip"
        HOST_IP=$host_ip "${compose[@]}" up --detach
        say "chat page: http://$host_ip:8080  (api :7070, websocket :7000/ws, TCP :7001/:7002)"
        say "status: ${compose[*]} ps    logs: ${compose[*]} logs -f    stop: ${compose[*]} down"
        ;;
    *)
        sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
        [ "$command" = help ] || exit 2
        ;;
esac
