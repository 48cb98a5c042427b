"""Measurements side by side: A/B runs (plain vs speculative), the benchmark, and what each pair learned
on this machine (pair profiles)."""
