"""Load checks, run by hand (`python -m clinicconf.bench.<name>`), never by the tests:
see docs/benchmarks.md."""
