"""Benchmarks, each a `python -m bench.<name>` command. They time the per-click work as the worker runs it, with one
BLAS thread (stream/cli.py `one_blas_thread`), set here before any benchmark imports numpy."""

from stream.cli import one_blas_thread

one_blas_thread()
