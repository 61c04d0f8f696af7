"""Peak memory of one accepted API answer of N tiny events (`{"id": N}`, the worst shape per byte).

    .venv/bin/python bench/answer_memory.py 590000    # ~7.8 MB of JSON, just under max_response_mb 8

Prints the body size, the events parsed (or the too-large error) and the peak RSS before and after.
"""

import asyncio
import resource
import sys

import httpx

from siemconn.config import Configuration, Credentials
from siemconn.rux.client import RuxClient
from siemconn.rux.streams import StreamSpec

n = int(sys.argv[1])
events = ",".join(f'{{"id":{i}}}' for i in range(1, n + 1))
body = f'{{"events":[{events}],"next_checkpoint":{n + 1},"remaining_count":0}}'.encode()
print("body MB", len(body) / 2**20)


def handler(req: httpx.Request) -> httpx.Response:
    if req.url.path == "/oauth2/token":
        return httpx.Response(200, json={"access_token": "at-1234567890abc", "expires_in": 3600})
    return httpx.Response(200, content=body)


cfg = Configuration.model_validate(
    {
        "server": [{"name": "a", "server_protocol": "TCP", "server_host": "127.0.0.1", "server_port": 1}],
        "scheduler": {"audit": "* * * * *", "detections": "* * * * *", "entity_scoring": "* * * * *"},
        "retry_count": 1,
    }
)
creds = Credentials.model_validate(
    {"BASE_URL": "https://x.example", "CLIENT_ID": "a", "CLIENT_SECRET": "bbbbbbbbbbbbbbbbbbbb"}
)


async def main() -> None:
    c = RuxClient(creds, cfg, transport=httpx.MockTransport(handler))
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    try:
        async for p in c.pages(StreamSpec("detections"), 1):
            print("events", len(p.events))
    except Exception as e:
        print("error", e)
    print("base MB", base, "peak MB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


asyncio.run(main())
