"""Developer tools, not used by the service: the fake RUX tenant (`fake_rux`, with its own stream tables
and event generators in `events`), a printing syslog receiver (`receiver`), the `make demo` launcher
(`demo`), and the harness the tests, the benchmarks and the demo share (`harness`: free ports, config
skeletons, certificates, frame splitting, starting the fake tenant, waiting for a condition)."""

__all__: list[str] = []
