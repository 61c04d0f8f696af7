"""Command line: `siemconn run | check | status | send-test --config PATH`, and `--version`; the process
exit codes (`ExitCode`, documented in the README)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from typing import Final, TextIO

from siemconn import __version__
from siemconn.config import Settings, load_settings
from siemconn.errors import ConfigError

__all__ = ["ExitCode", "main"]


class ExitCode:
    """The process exit codes (plain ints; the README's table and the systemd unit use the numbers)."""

    OK: Final = 0
    UNEXPECTED: Final = 1
    CONFIG: Final = 2  # invalid configuration or environment, or credentials rejected at startup
    ALL_SERVERS_DOWN: Final = 3


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="siemconn", description="Forward Vectra RUX events to syslog servers without losing any."
    )
    p.add_argument("--version", action="version", version=f"siemconn {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, text in (
        ("run", "run the connector until SIGTERM/SIGINT"),
        ("check", "validate the config, then test the RUX token and every syslog server"),
        ("status", "show checkpoints, last polls and queue depths (read-only, works while running)"),
        ("send-test", "send one clearly marked test message to every syslog server"),
    ):
        sp = sub.add_parser(name, help=text, description=text)
        sp.add_argument(
            "--config", default="config.json", help="path to config.json (default: ./config.json)"
        )
    return p


def _load(path: str, err: TextIO) -> Settings | None:
    try:
        return load_settings(path)
    except ConfigError as exc:
        print(f"error: invalid configuration\n{exc.render()}", file=err)
        return None


def main(argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    args = _parser().parse_args(argv)
    settings = _load(args.config, err)
    if settings is None:
        return ExitCode.CONFIG
    if args.command == "run":
        from siemconn.service import run_service

        return run_service(settings)
    if args.command == "check":
        from siemconn.checks import run_checks

        return asyncio.run(run_checks(settings, out))
    if args.command == "status":
        from siemconn.checks import print_status

        return print_status(settings, out)
    if args.command == "send-test":
        from siemconn.checks import send_test

        return asyncio.run(send_test(settings, out))
    return ExitCode.UNEXPECTED  # pragma: no cover - argparse rejects unknown commands
