"""siemconn.ops.metrics: off by default (every call a no-op, prometheus-client never imported), on only
with a metrics_address."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from support.configs import configuration

from siemconn.config import Credentials, Settings
from siemconn.service import Service


def test_metrics_off_record_nothing_and_do_not_load_prometheus_client() -> None:
    """The default (no metrics_address): every metric call works and does nothing, and prometheus-client
    is never imported (it costs ~2 MB of resident memory for an endpoint nobody serves)."""
    code = (
        "import sys\n"
        "import siemconn.service\n"
        "from siemconn.ops.metrics import Metrics\n"
        "m = Metrics(enabled=False)\n"
        "m.events_fetched.labels(stream='audit').inc(5)\n"
        "m.queue_depth.labels('s').set(3)\n"
        "m.api_requests.labels(status='200').inc()\n"
        "assert m.registry is None and not m.enabled\n"
        "print('prometheus_client' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_the_service_turns_metrics_on_only_with_an_address(tmp_path: Path) -> None:
    creds = Credentials.model_validate(
        {"BASE_URL": "http://127.0.0.1:9", "CLIENT_ID": "c", "CLIENT_SECRET": "s"}
    )
    cases: list[tuple[dict[str, Any], bool]] = [({}, False), ({"metrics_address": "127.0.0.1:9108"}, True)]
    for extra, enabled in cases:
        cfg = configuration(data_dir=str(tmp_path / "d"), **extra)
        settings = Settings(configuration=cfg, credentials=creds, config_path=tmp_path / "config.json")
        assert Service(settings).metrics.enabled is enabled
