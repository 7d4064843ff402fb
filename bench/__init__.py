"""Benchmarks: they print medians and ratios; they never assert timings."""
