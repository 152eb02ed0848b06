"""What the test modules share that is not a fixture: helpers, constants and the
little worlds they build. Fixtures are in the conftest.py of the narrowest directory
that holds every module using them; no test module imports another."""
