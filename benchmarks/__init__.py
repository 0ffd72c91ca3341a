"""osnet_edge.benchmarks: latency, throughput and Mult-Adds across backends, precisions, β and ρ."""
