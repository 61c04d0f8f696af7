"""Command line: `siemconn run | check | status | send-test | replay --config PATH`, `siemconn quarantine
export [--output FILE] | count --config PATH`, and `--version`; the process exit codes (`ExitCode`,
documented in the README and in `--help`).

`run` and `check` load config.json and the API credentials; `status`, `send-test` and `replay` never call
the API and load config.json alone, so they work with BASE_URL / CLIENT_ID / CLIENT_SECRET unset.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn, TextIO

from siemconn.buildinfo import version_line
from siemconn.config import LocalSettings, Settings, load_local_settings, load_settings
from siemconn.errors import ConfigError
from siemconn.exitcodes import ExitCode

__all__ = ["ExitCode", "main"]


EPILOG = f"""\
environment (run and check; status, send-test and replay need none of it):
  BASE_URL             the tenant portal, https://<tenant>.<region>.portal.vectra.ai
  CLIENT_ID            API client id (Vectra UI: Manage > API Clients)
  CLIENT_SECRET        API client secret, or CLIENT_SECRET_FILE naming a file that holds it
  SIEMCONN_TUNING=off  keep glibc malloc's defaults (run)
  SIEMCONN_RUNTIME_DIR where run writes, and status/replay look for, the record naming its queue
  SIEMCONN_FAST_ENCODER=off  encode events with the standard library encoder only (=ujson: not the C one)
  SIEMCONN_GC=off      keep the garbage collector running while a page is parsed

exit codes:
  {ExitCode.OK:<3}  clean stop; every check passed
  {ExitCode.UNEXPECTED:<3}  unexpected error; queue corrupt, locked or not writable; a failed check or send-test
  {ExitCode.CONFIG:<3}  invalid configuration or environment, or credentials rejected at start-up
  {ExitCode.ALL_SERVERS_DOWN:<3}  every syslog server is down after retry_count reconnects
  {ExitCode.USAGE:<3}  bad command line (no or unknown command, unknown option)
  {ExitCode.BROKEN_PIPE:<3}  the reader of the output went away (e.g. `siemconn status | head -2`)
"""


class _Parser(argparse.ArgumentParser):
    """argparse with EX_USAGE (64) for command-line mistakes: 2 means an invalid config here."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(ExitCode.USAGE, f"{self.prog}: error: {message}\n")


class _VersionAction(argparse.Action):
    """`--version`: the version and the commit it was built from (`siemconn.buildinfo`), looked up only
    when asked, so that other commands never run git."""

    def __init__(self, option_strings: list[str], dest: str, **kw: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, help="print the version and the commit, then exit")

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kw: Any) -> None:
        sys.stdout.write(version_line() + "\n")
        parser.exit(0)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="siemconn",
        description="Forward Vectra RUX events to syslog servers without losing any.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action=_VersionAction)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    for name, text in (
        ("run", "run the connector until SIGTERM/SIGINT"),
        ("check", "validate the config, then test the RUX token and every syslog server"),
        ("status", "show checkpoints, last polls and queue depths (read-only, no API credentials needed)"),
        ("send-test", "send one clearly marked test message to every syslog server (no API credentials)"),
    ):
        sp = sub.add_parser(
            name,
            help=text,
            description=text,
            epilog=EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        _config_arg(sp)
        if name == "status":
            sp.add_argument(
                "--data-dir",
                default=None,
                help="the queue's directory (default: found as the service has it)",
            )
            sp.add_argument("--json", action="store_true", help="print the status as JSON (for scripts)")
    qp = sub.add_parser(
        "quarantine",
        help="events kept instead of sent (bad bytes, unparseable, unformattable): export or count them",
        description="Quarantined events stay in the queue database; read-only, works while running. "
        "Needs no API credentials.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    qsub = qp.add_subparsers(dest="action", required=True, metavar="ACTION")
    ep = qsub.add_parser(
        "export",
        help="write every quarantined event as one JSON line (raw text, stream, id, reason, time)",
    )
    ep.add_argument("--output", default=None, help="file to write (created 0600); default: stdout")
    _config_arg(ep)
    _config_arg(qsub.add_parser("count", help="count quarantined events per stream and reason"))
    text = "re-send the retained events of a time window to one server (the running service sends them)"
    rp = sub.add_parser(
        "replay",
        help=text,
        description=text + ". The window is in event time (event_timestamp), [--since, --until), or in "
        "the time the events were sent to that server, [--sent-since, --sent-until) (whatever their event "
        "time: what a SIEM that lost everything it received between two times needs). Needs retain_hours > "
        "0 (delivered events are kept that long); no API credentials needed.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    rp.add_argument("--config", default="config.json", help="path to config.json (default: ./config.json)")
    rp.add_argument("--server", required=True, help="the server's name in config.json")
    window = rp.add_mutually_exclusive_group(required=True)
    window.add_argument(
        "--since",
        help="start of the event-time window: ISO 8601 (UTC if no zone), or 30m, 6h, 2d (ago)",
    )
    window.add_argument(
        "--sent-since",
        help="start of the delivery-time window: the events this server acknowledged from then on",
    )
    rp.add_argument("--until", default=None, help="end of the event-time window, exclusive (default: now)")
    rp.add_argument(
        "--sent-until", default=None, help="end of the delivery-time window, exclusive (default: now)"
    )
    rp.add_argument(
        "--stream", default=None, help="only this stream (default: every stream the server takes)"
    )
    rp.add_argument("--data-dir", default=None, help="the queue's directory (default: found as for status)")
    return p


def _config_arg(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--config", default="config.json", help="path to config.json (default: ./config.json)")


def _report(exc: ConfigError, err: TextIO) -> None:
    what = " and ".join(
        name
        for name, items in (("configuration", exc.file_problems), ("environment", exc.environment_problems))
        if items
    )
    print(f"error: invalid {what or 'configuration'}\n{exc.render()}", file=err)


def _load(path: str, err: TextIO) -> Settings | None:
    try:
        return load_settings(path)
    except ConfigError as exc:
        _report(exc, err)
        return None


def _load_local(path: str, err: TextIO) -> LocalSettings | None:
    try:
        return load_local_settings(path)
    except ConfigError as exc:
        _report(exc, err)
        return None


def _dispatch(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if args.command == "replay":
        from siemconn.commands.replay import request_replay

        return request_replay(args, out, err)
    if args.command in ("status", "send-test", "quarantine"):
        local = _load_local(args.config, err)
        if local is None:
            return ExitCode.CONFIG
        if args.command == "status":
            from siemconn.commands.status import print_status

            return print_status(local, out, data_dir=args.data_dir, as_json=args.json)
        if args.command == "quarantine":
            from siemconn.commands.quarantine import quarantine_count, quarantine_export

            if args.action == "export":
                return quarantine_export(local, args.output, out, err)
            return quarantine_count(local, out)
        from siemconn.commands.sendtest import send_test

        return asyncio.run(send_test(local, out))
    settings = _load(args.config, err)
    if settings is None:
        return ExitCode.CONFIG
    if args.command == "run":
        from siemconn.service import run_service

        return run_service(settings)
    if args.command == "check":
        from siemconn.commands.check import run_checks

        return asyncio.run(run_checks(settings, out))
    return ExitCode.USAGE  # pragma: no cover - argparse rejects unknown commands


def _silence_stdout() -> None:
    """After EPIPE: point fd 1 at /dev/null so the interpreter's final flush cannot raise again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def main(argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        try:
            args = _parser().parse_args(argv)
        except SystemExit:  # --help, --version, usage errors: their text must reach the reader, or EPIPE
            sys.stdout.flush()
            raise
        code = _dispatch(args, out, err)
        out.flush()
        return code
    except BrokenPipeError:  # the reader went away (`| head`): not an error worth a traceback
        if out is sys.stdout:
            _silence_stdout()
        return ExitCode.BROKEN_PIPE
