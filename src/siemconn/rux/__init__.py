"""The RUX source: OAuth2 token lifecycle, retries and paging over the Vectra RUX event streams."""

from siemconn.rux.client import Page, RuxClient
from siemconn.rux.streams import ALL_SPECS, StreamSpec, build_params, stream_specs

__all__ = ["ALL_SPECS", "Page", "RuxClient", "StreamSpec", "build_params", "stream_specs"]
