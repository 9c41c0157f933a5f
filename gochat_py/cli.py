"""Command line: ``gochat-py --module NAME`` runs one module; ``gochat-py up`` runs them all."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Awaitable, Callable

from gochat_py.client import tcp as tcp_client
from gochat_py.client import terminal as chat_client
from gochat_py.config import ConfigError, Settings, load_settings

# module name -> "package.module:coroutine function" taking Settings; imported only when chosen.
MODULES = {
    "logic": "gochat_py.logic.server:serve",
    "connect_websocket": "gochat_py.connect.websocket:serve_websocket",
    "connect_tcp": "gochat_py.connect.tcp:serve_tcp",
    "task": "gochat_py.task.worker:serve",
    "api": "gochat_py.api.server:serve",
    "site": "gochat_py.site.server:serve",
}


def _entry(name: str) -> Callable[[Settings], Awaitable[None]]:
    module_path, _, function = MODULES[name].partition(":")
    return getattr(importlib.import_module(module_path), function)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gochat-py", description=__doc__)
    parser.add_argument("--module", help=f"run one module: {', '.join(MODULES)}")
    parser.add_argument("--config-dir", help="folder with common.toml, api.toml, ... (default config/<env>)")
    parser.add_argument("--env", help="configuration environment: dev or prod (default $GOCHAT_ENV or dev)")
    commands = parser.add_subparsers(dest="command")
    up = commands.add_parser("up", help="start the whole system on this machine (and Redis, etcd); restart what dies")
    up.add_argument("--no-infra", action="store_true", help="never start Redis or etcd, only use running ones")
    client = commands.add_parser("client", help="small clients for people and scripts")
    clients = client.add_subparsers(dest="client", required=True)
    tcp_client.add_parser(clients)
    chat_client.add_parser(clients)
    commands.add_parser("bench", help="benchmark a running system: gochat-py bench --help, docs/benchmarks.md")
    db = commands.add_parser("db", help="the database's schema: upgrade it to this release's, or show its revision")
    db_commands = db.add_subparsers(dest="db", required=True)
    db_commands.add_parser("upgrade", help="migrate [logic] database_url to this release's schema (keeps every row)")
    db_commands.add_parser("current", help="show the database's schema revision and this release's")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["bench"]:  # its own parser, imported only when used
        from gochat_py.bench.cli import main as bench_main

        return bench_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "client":
        return chat_client.main(args) if args.client == "chat" else tcp_client.main(args)
    if args.command is None and args.module is None:
        parser.print_help(sys.stderr)
        return 2
    if args.module is not None and args.module not in MODULES:
        print(f"gochat-py: unknown module {args.module!r}; choose one of: {', '.join(MODULES)}", file=sys.stderr)
        return 2
    try:
        settings = load_settings(args.config_dir, args.env)
    except ConfigError as exc:
        print(f"gochat-py: {exc}", file=sys.stderr)
        return 2

    if args.command == "db":
        return _database_command(args.db, settings)

    if args.command == "up":
        from gochat_py.launcher import up

        return up(settings, start_infra=not args.no_infra)

    from gochat_py.logs import kv, setup_logging
    from gochat_py.runtime import run
    from gochat_py.storage.schema import DatabaseRefused

    setup_logging(args.module, settings.log.level)
    entry = _entry(args.module)
    try:
        run(lambda: entry(settings))
    except (ConfigError, OSError, DatabaseRefused) as exc:  # a port in use, an old schema, etcd unreachable...
        logging.getLogger("gochat").error("cannot start", extra=kv(error=str(exc)))
        return 1
    return 0


def _database_command(command: str, settings: Settings) -> int:
    """``gochat-py db upgrade|current``: exit 0 when the schema is (now) this release's, 1 otherwise."""
    import asyncio

    from gochat_py.storage.schema import read_state, safe_url, upgrade
    from gochat_py.storage.sql import make_engine

    url = settings.database_url

    async def current() -> int:
        engine = make_engine(url)
        try:
            state = await read_state(engine)
        finally:
            await engine.dispose()
        print(f"database: {safe_url(url)}")
        print(f"revision: {state.current or 'none'} (this release: {state.head})")
        problem = state.problem(url)
        print(problem or "up to date")
        return 1 if problem else 0

    async def migrate() -> int:
        before, after = await upgrade(url)
        print(f"database: {safe_url(url)}")
        if after is None:
            problem = before.problem(url)
            print(problem if problem else f"already at revision {before.head}: nothing to do")
            return 1 if problem else 0
        print(f"upgraded: revision {before.current or 'none'} -> {after.current}")
        return 0

    try:
        return asyncio.run(current() if command == "current" else migrate())
    except Exception as exc:  # unreachable server, wrong password, unknown driver: one line, no traceback
        detail = getattr(exc, "orig", None) or exc
        print(f"gochat-py db {command}: cannot use the database {safe_url(url)}: {detail}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
