"""Test helpers shared by the unit and end-to-end tests: a real rsyslog receiver, trustme certificates,
syslog line parsers and an in-memory queue that implements the durable queue's interface."""
