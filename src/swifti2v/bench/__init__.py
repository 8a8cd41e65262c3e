"""Benchmarks: fidelity on held-out procedural clips (more in docs/benchmarks.md)."""
