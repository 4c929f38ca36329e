"""Training one architecture: loop, metrics, cost (params, FLOPs, latency), run folders."""
