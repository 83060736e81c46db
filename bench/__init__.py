"""Benchmarks behind ``ramparts bench``; each figure is recorded in docs/benchmarks.md."""
