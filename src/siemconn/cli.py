"""Command line: `siemconn run | check | status | send-test | replay --config PATH`, and `--version`; the process
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
        if name == "status":
            sp.add_argument(
                "--data-dir",
                default=None,
                help="the queue's directory (default: found as the service has it)",
            )
            sp.add_argument("--json", action="store_true", help="print the status as JSON (for scripts)")
    rp = sub.add_parser(
        "replay",
        help="re-send the retained events of a time window to one server (the running service sends them)",
        description="Ask the running service to re-send the events whose event time is in [--since, "
        "--until) to one server only. Needs retain_hours > 0 (delivered pages are kept that long).",
    )
    rp.add_argument("--config", default="config.json", help="path to config.json (default: ./config.json)")
    rp.add_argument("--server", required=True, help="the server's name in config.json")
    rp.add_argument(
        "--since",
        required=True,
        help="start of the window: ISO 8601 (UTC if no zone) or e.g. 2h, 30m, 1d ago",
    )
    rp.add_argument("--until", default=None, help="end of the window (exclusive; default: now)")
    rp.add_argument(
        "--stream", default=None, help="only this stream (default: every stream the server takes)"
    )
    rp.add_argument("--data-dir", default=None, help="the queue's directory (default: found as for status)")
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
    if args.command == "replay":
        from siemconn.replay_cli import request_replay

        return request_replay(args, out, err)
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

        return print_status(settings, out, data_dir=args.data_dir, as_json=args.json)
    if args.command == "send-test":
        from siemconn.checks import send_test

        return asyncio.run(send_test(settings, out))
    return ExitCode.UNEXPECTED  # pragma: no cover - argparse rejects unknown commands
