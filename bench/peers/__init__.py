"""Peers the benchmarks compare against, each run the way its own documentation shows."""
