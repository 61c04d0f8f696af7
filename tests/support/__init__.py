"""Test helpers shared by the unit and end-to-end tests: a real rsyslog receiver, trustme certificates,
syslog line parsers and an in-memory queue that implements the pool's queue contract. What the tests
share with the benchmarks and the demo (ports, config skeletons, certificates, frame splitting, waiting)
lives in siemconn.devtools.harness."""
