"""Operations: what lets an operator and a supervisor see and manage the running process, apart from
the pipeline itself.

* `health`: the health state (event loop beats, servers reachable recently);
* `endpoint`: the optional /metrics and /healthz HTTP endpoint;
* `heartbeat`: the heartbeat file and the container health check that reads it;
* `metrics`: Prometheus counters and gauges on a private registry (no-ops when off);
* `sdnotify`: systemd's notify protocol (READY, WATCHDOG, STOPPING);
* `malloc`: the process's malloc tuning (one glibc arena);
* `gctune`: the garbage collector paused while an API page is parsed;
* `runtime`: the runtime record by which `status` and `replay` find a running service's queue.

The modules are imported one by one; the package itself exports nothing.
"""

__all__: list[str] = []
