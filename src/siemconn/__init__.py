"""siemconn: Vectra RUX events to syslog, with a durable queue so that no event is lost."""

__all__ = ["__version__"]

__version__ = "0.1.0"
