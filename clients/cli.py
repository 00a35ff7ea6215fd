"""`completiond`: the command line's entry point and its one error boundary.

The parser is in `parser.py`, the commands in `commands.py`, `serve_command.py` and
`train_commands.py`, the status rendering in `render.py`; every option is documented in
docs/commands.md.
"""

from __future__ import annotations

import argparse
import logging
import sys

import grpc

from completiond.core.errors import CompletiondError

from .commands import cmd_lsp
from .parser import build_parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["lsp"]:  # the language server parses its own options (`lsp --help`)
        return cmd_lsp(argparse.Namespace(lsp_args=argv[1:]))
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s: %(message)s",
    )
    return _run(args)


def _run(args: argparse.Namespace) -> int:
    """Run the command: a failure is one line for the user, never a traceback."""
    try:
        return int(args.run(args))
    except CompletiondError as exc:
        print(f"completiond: {exc}", file=sys.stderr)
        return 1
    except grpc.RpcError as exc:
        print(f"completiond: {_rpc_failure(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _rpc_failure(exc: grpc.RpcError) -> str:
    code, details = exc.code(), exc.details()  # type: ignore[attr-defined]
    if code == grpc.StatusCode.UNAVAILABLE and "connect" in (details or "").lower():
        details = f"cannot reach the daemon ({details}); is `completiond serve` running?"
    return f"{code.name.lower()}: {details}"


if __name__ == "__main__":
    sys.exit(main())
