"""`completiond eval` and the benchmarks' shared measuring code: metrics, replay, report."""
