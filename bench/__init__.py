"""Benchmarks: each prints its figures and a reference measured in the same run."""
