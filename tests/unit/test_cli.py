"""siemconn.cli in-process: the command line's exit codes. The command line as a process (usage, --help,
a closed stdout, --version) is tests/e2e/test_cli.py."""

from __future__ import annotations

import pytest

from siemconn.cli import ExitCode, main


def test_main_returns_usage_code_in_process(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as ei:
        main([])
    assert ei.value.code == ExitCode.USAGE
