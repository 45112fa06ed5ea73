"""Kernel and end-to-end benchmarks: cold-L2 timing helpers and one module per `ctxsparse bench` sub-verb."""
