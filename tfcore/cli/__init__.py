"""The ``tfcore`` command (also ``python -m tfcore``): one subcommand per module here.

Exit codes scripts can rely on: 0 success, 1 the command failed (bad checkpoint, bad
input, missing optional package; the message says which), 2 bad command-line usage,
130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional

from . import (
    bench,
    chat,
    check,
    classify,
    demo,
    embed,
    generate,
    images,
    info,
    inspect,
    run,
    search,
    transcribe,
)

COMMANDS = {
    m.NAME: m
    for m in (
        demo,
        info,
        embed,
        search,
        images,
        classify,
        generate,
        chat,
        transcribe,
        run,
        inspect.Inspect,
        inspect.Convert,
        bench,
        check,
    )
}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tfcore",
        description="tfcore: fast CPU inference for transformer models.",
        epilog="Run 'tfcore COMMAND --help' for a command's options. Exit codes: 0 ok, "
        "1 failed, 2 usage error.",
    )
    from .. import __version__

    p.add_argument("--version", action="version", version=f"tfcore {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name, mod in COMMANDS.items():
        mod.add_arguments(
            sub.add_parser(
                name,
                help=mod.HELP,
                description=(mod.__doc__ or "").strip(),
                formatter_class=argparse.RawDescriptionHelpFormatter,
            )
        )
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = parser().parse_args(argv)
    command = COMMANDS[args.command or "demo"]
    if args.command is None:
        args = parser().parse_args(["demo"])
    import warnings

    import tfcore

    name = args.command or "demo"
    # warnings (texts truncated, ...) read as the command's own messages, without source lines
    saved, warnings.formatwarning = (
        warnings.formatwarning,
        lambda message, *a, **k: f"tfcore {name}: warning: {message}\n",
    )
    try:
        return int(command.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (tfcore.TfcoreError, OSError, ImportError) as e:
        print(f"tfcore {name}: error: {e}", file=sys.stderr)
        return 1
    finally:
        warnings.formatwarning = saved
