"""What the pipeline's jobs run: a model over the evaluation set (`runner`), evaluation and its metrics,
FLOPs matching of schedules, OOD conditions, and latency/throughput timing. `config` (the
pre-flight of the Snakefile) stays free of torch."""
