"""What the pipeline's jobs run: a model over the evaluation set (`runner`) on the configured device
with fixed fp32 numerics (`device`), evaluation and its metrics, FLOPs matching of schedules, OOD
conditions, and latency/throughput timing. `config` (the pre-flight of the Snakefile) stays free of
torch."""
