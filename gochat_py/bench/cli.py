"""``gochat-py bench``: run one scenario, draw plots, or run the documented sweep.

    gochat-py bench room --users 500 --messages 1000 --concurrency 16
    gochat-py bench private --users 500 --messages 2000 --concurrency 64
    gochat-py bench rate --users 500 --rate 40 --messages 400
    gochat-py bench idle --users 1000 --sockets-per-user 10 --client-procs 2
    gochat-py bench floor --users 500 --messages 1000
    gochat-py bench room --users 500 --messages 1000 --join-since --history on,off --repeat 2
    gochat-py bench private --users 500 --messages 2000 --concurrency 64 --send http,socket --repeat 3
    gochat-py bench idle --users 1000 --sockets-per-user 10 --rooms-per-socket 10 --client-procs 2
    gochat-py bench soak --users 200 --duration 600 --rate 20 --resume
    gochat-py bench plot docs/bench/*.json --out docs/bench
    gochat-py bench sweep --out docs/bench
    gochat-py bench replica-wait --pushes 3000 --concurrency 1,16

A run prints one JSON summary on stdout (progress on stderr) and exits 0 when nothing was lost,
duplicated or refused, 1 otherwise, 2 for bad arguments.  Targets must be loopback addresses.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gochat_py.bench.options import MODES, TargetError, add_run_arguments, options_from_args

MODE_HELP = {
    "room": "N users in one room; M room messages pushed at concurrency C; every message must reach all N",
    "private": "N users; M private messages at concurrency C, each to one random online user",
    "rate": "like room, but pushed at --rate messages per second (latency under a steady load)",
    "idle": "N authenticated idle sockets; connect-process RSS per connection",
    "floor": "no gochat at all: one bench process fans a pre-encoded frame out to N websockets",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gochat-py bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="mode", required=True, metavar="MODE")
    for mode in MODES:
        add_run_arguments(commands.add_parser(mode, help=MODE_HELP[mode], description=MODE_HELP[mode]))
    plot = commands.add_parser("plot", help="draw PNG plots from JSON summaries (needs matplotlib)")
    plot.add_argument("inputs", nargs="+", help="JSON summaries (files, or folders holding them)")
    plot.add_argument("--out", required=True, help="folder for the PNG files")
    soak_help = "N users over websocket and TCP, room and private messages, connection churn, for a set time"
    from gochat_py.bench.soak import add_soak_arguments

    add_soak_arguments(commands.add_parser("soak", help=soak_help, description=soak_help))
    wait_help = "what [redis] wait_replicas costs a push: logic's enqueue with and without WAIT (own Redis pair)"
    from gochat_py.bench.replica_wait import add_replica_wait_arguments

    add_replica_wait_arguments(commands.add_parser("replica-wait", help=wait_help, description=wait_help))
    sweep = commands.add_parser("sweep", help="run the documented set of scenarios and regenerate docs/bench")
    from gochat_py.bench.sweep import add_sweep_arguments

    add_sweep_arguments(sweep)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.mode == "plot":
        from gochat_py.bench.plots import plot_files

        for path in plot_files([Path(p) for p in args.inputs], Path(args.out)):
            print(path)
        return 0
    if args.mode == "soak":
        from gochat_py.bench.soak import soak_main

        return soak_main(args)
    if args.mode == "replica-wait":
        from gochat_py.bench.replica_wait import replica_wait_main

        return replica_wait_main(args)
    if args.mode == "sweep":
        from gochat_py.bench.sweep import run_sweep

        return run_sweep(args)
    try:
        opts = options_from_args(args)
    except TargetError as exc:
        print(f"gochat-py bench: {exc}", file=sys.stderr)
        return 2
    if opts.history or len(opts.send) > 1:
        from gochat_py.bench.sweep import compare_settings

        return compare_settings(opts)
    from gochat_py.bench.coordinator import run_to_summary
    from gochat_py.bench.scenarios import run_bench

    summary, text = run_to_summary(run_bench(opts), opts.output)
    if opts.plot:
        from gochat_py.bench.plots import plot_summaries

        plot_summaries([summary], Path(opts.plot))
    print(text, flush=True)
    return 0 if summary.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main())
