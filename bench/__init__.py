"""Benchmarks that print figures against the raw Docker floor.

Run them all from the repo root with ``.venv/bin/python -m bench.run``, or one with
``.venv/bin/python -m bench.docker_floor``.
"""
