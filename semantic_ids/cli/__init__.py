"""The ``semantic-ids`` command line: ``main`` (parsers, exit codes) and ``commands`` (handlers)."""
