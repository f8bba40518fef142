"""Benchmarks: acknowledgement path, end to end with a polling baseline, renewal at scale."""
