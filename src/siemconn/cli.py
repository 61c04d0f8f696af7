"""Command line: `siemconn run | check | status | send-test --config PATH`, `siemconn quarantine export
[--output FILE] | count --config PATH`, and `--version`."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from typing import TextIO

from siemconn import __version__, exitcodes
from siemconn.config import Settings, load_settings
from siemconn.errors import ConfigError


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
        _config_arg(sp)
    qp = sub.add_parser(
        "quarantine",
        help="events kept instead of sent (bad bytes, unparseable, unformattable): export or count them",
        description="Quarantined events stay in the queue database; read-only, works while running.",
    )
    qsub = qp.add_subparsers(dest="action", required=True, metavar="ACTION")
    ep = qsub.add_parser(
        "export",
        help="write every quarantined event as one JSON line (raw text, stream, id, reason, time)",
    )
    ep.add_argument("--output", default=None, help="file to write (created 0600); default: stdout")
    _config_arg(ep)
    _config_arg(qsub.add_parser("count", help="count quarantined events per stream and reason"))
    return p


def _config_arg(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--config", default="config.json", help="path to config.json (default: ./config.json)")


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
        return exitcodes.CONFIG
    if args.command == "run":
        from siemconn.service import run_service

        return run_service(settings)
    if args.command == "check":
        from siemconn.checks import run_checks

        return asyncio.run(run_checks(settings, out))
    if args.command == "status":
        from siemconn.checks import print_status

        return print_status(settings, out)
    if args.command == "quarantine":
        from siemconn.checks import quarantine_count, quarantine_export

        if args.action == "export":
            return quarantine_export(settings, args.output, out, err)
        return quarantine_count(settings, out)
    if args.command == "send-test":
        from siemconn.checks import send_test

        return asyncio.run(send_test(settings, out))
    return exitcodes.UNEXPECTED  # pragma: no cover - argparse rejects unknown commands
