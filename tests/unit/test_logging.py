"""structlog setup: JSON file in log_dir (0750), console or JSON on the stream, secrets scrubbed."""

from __future__ import annotations

import io
import json
import logging
import urllib.parse
from pathlib import Path

from siemconn.logging import Redactor, get_logger, setup_logging

SECRET = "very-Secret-Value-123"


def _flush() -> None:
    for h in logging.getLogger().handlers:
        h.flush()


def test_json_file_and_stream_with_secrets_scrubbed(tmp_path: Path) -> None:
    stream = io.StringIO()
    redactor = setup_logging(log_dir=tmp_path / "logs", fmt="json", secrets=[SECRET], stream=stream)
    redactor.add("late-access-token-xyz")  # tokens learned at run time are scrubbed too
    log = get_logger("t")
    log.info("token step", detail=f"secret={SECRET}", nested={"t": ["late-access-token-xyz"]})
    log.error("failed", error=ValueError(f"bad {SECRET}"))
    _flush()
    lines = [json.loads(x) for x in stream.getvalue().splitlines()]
    assert [r["event"] for r in lines] == ["token step", "failed"]
    assert lines[0]["detail"] == "secret=***" and lines[0]["nested"] == {"t": ["***"]}
    assert lines[1]["level"] == "error" and "***" in lines[1]["error"]
    file_text = (tmp_path / "logs" / "siemconn.log").read_text()
    assert SECRET not in stream.getvalue() + file_text and "late-access-token-xyz" not in file_text
    assert [json.loads(x)["event"] for x in file_text.splitlines()] == ["token step", "failed"]
    assert oct((tmp_path / "logs").stat().st_mode & 0o777) == "0o750"


def test_console_format_is_human_readable(tmp_path: Path) -> None:
    stream = io.StringIO()
    setup_logging(log_dir=None, fmt="console", stream=stream)
    get_logger("t").warning("syslog_server_lost", server="s1")
    _flush()
    out = stream.getvalue()
    assert "syslog_server_lost" in out and "server=s1" in out and not out.lstrip().startswith("{")


def test_auto_format_is_json_when_not_a_tty(tmp_path: Path) -> None:
    stream = io.StringIO()
    setup_logging(log_dir=None, fmt="auto", stream=stream)
    get_logger("t").info("hello", n=1)
    _flush()
    rec = json.loads(stream.getvalue())
    assert rec["event"] == "hello" and rec["n"] == 1 and rec["timestamp"].endswith("Z")


def test_stdlib_loggers_go_through_the_same_pipeline(tmp_path: Path) -> None:
    stream = io.StringIO()
    setup_logging(log_dir=None, fmt="json", secrets=[SECRET], stream=stream)
    logging.getLogger("somelib").warning("lib says %s", SECRET)
    _flush()
    rec = json.loads(stream.getvalue())
    assert rec["event"] == "lib says ***"


def test_redactor_masks_escaped_encoded_and_partial_forms() -> None:
    """Issue 20 item 10: a token cut by a truncation, escaped in JSON or repr, URL-encoded, or with its
    newline turned into a space is masked; nothing of 12+ characters survives."""
    token = 'tok/en+with"quote\nand-newline-0123456789'
    r = Redactor([SECRET])
    r.add(token)
    forms = [
        token,
        json.dumps(token),
        repr(token),
        urllib.parse.quote(token, safe=""),
        token.replace("\n", " "),
        token[:15],  # the head of a cut token
        token[-14:],  # its tail
        SECRET[3:17],
    ]
    for form in forms:
        out = r.scrub_text(f"before {form} after")
        assert "***" in out, form
        for i in range(len(out) - 11):
            window = out[i : i + 12]
            assert window not in token and window not in SECRET, (form, out)
    assert r.scrub_text("nothing secret here, 123456789012345") == "nothing secret here, 123456789012345"
    assert r.scrub_text("tok/en") == "tok/en"  # shorter than 12 characters of a long token: not a leak


def test_redactor_keeps_a_bounded_number_of_tokens() -> None:
    r = Redactor([SECRET])
    for i in range(200):
        r.add(f"token-number-{i:04d}-abcdefghijkl")
    assert "***" in r.scrub_text("token-number-0199-abcdefghijkl")
    assert "***" in r.scrub_text(SECRET)  # configured secrets are never forgotten
    assert r.scrub_text("token-number-0000-abcdefghijkl") != "***"  # the oldest tokens are forgotten


def test_log_files_are_0640_whatever_the_umask(tmp_path: Path) -> None:
    import os

    old = os.umask(0)
    try:
        setup_logging(log_dir=tmp_path / "logs", fmt="json", stream=io.StringIO())
        get_logger("t").info("x")
        _flush()
    finally:
        os.umask(old)
    assert (tmp_path / "logs" / "siemconn.log").stat().st_mode & 0o777 == 0o640
