"""Streaming enhancement: the Enhancer, its device steps, the DINO cache, smoothing, benchmarks."""
