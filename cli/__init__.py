"""The ``backbone`` command line: serve, migrate, seed the demo, administer, verify."""
