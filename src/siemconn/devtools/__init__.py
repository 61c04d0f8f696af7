"""Developer tools: the fake RUX tenant, event generators, a printing syslog receiver, the demo launcher."""
