"""Command line: ``tfcore [demo|info]`` (or ``python -m tfcore`` outside a source checkout)."""
from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tfcore", description=__doc__)
    sub = parser.add_subparsers(dest="command")
    demo = sub.add_parser("demo", help="run a small transformer encoder, self-check it against NumPy, time it")
    demo.add_argument("--threads", type=int, default=None, help="threads to compute with (default: all CPUs)")
    sub.add_parser("info", help="print the configuration (oneDNN version, runtime, ISA, threads)")
    args = parser.parse_args(argv)
    if args.command is None:
        args.command = "demo"

    import tfcore

    if args.command == "info":
        tfcore.show_config()
        return 0
    from ._demo import run_demo

    return run_demo(threads=getattr(args, "threads", None))


if __name__ == "__main__":
    sys.exit(main())
