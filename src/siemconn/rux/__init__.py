"""The RUX source: OAuth2 token lifecycle, retries and paging over the Vectra RUX event streams.

`client` pages (`RuxClient`, `Page`), `token` keeps the access token, `retry` is the retry policy,
`page` parses and checks one answer body, `answer` reads a bounded body, `cursor` the checkpoint rules,
`salvage` splits a page that does not parse, `streams` the stream table's source view, `healthevent` and `lockdown` the
snapshot streams.
"""

from siemconn.rux.client import Page, RuxClient
from siemconn.rux.streams import ALL_SPECS, StreamSpec, build_params, stream_specs

__all__ = ["ALL_SPECS", "Page", "RuxClient", "StreamSpec", "build_params", "stream_specs"]
