#!/usr/bin/env bash
# Checks the CUDA paths on a GPU machine (eval.device / timing.device, issue-level acceptance of the
# paper profile's GPU evaluation), in a few minutes:
#   1. tests/test_device.py (its CUDA tests run where a GPU is visible);
#   2. the micro profile through Snakemake twice, evaluation and timing on the CPU, then on CUDA
#      (same weights: trained once on this CPU), and every run's logits compared;
#   3. the paper profile's estimated wall time from img/s measured on this GPU;
#   4. the embedded default's runs (short training) evaluated on the CPU, re-evaluated on CUDA.
# Usage: benchmarks/cuda_check.sh [LOG_DIR]   (PYTHON=... to choose the interpreter; CORES=16)
set -u
PY=${PYTHON:-python}
CORES=${CORES:-$(nproc)}
LOGS=${1:-results/cuda_check}
mkdir -p "$LOGS"
cd "$(dirname "$0")/.."
$PY -c "import torch,timm,snakemake,sys;print(sys.version.split()[0], torch.__version__, timm.__version__, snakemake.__version__, torch.cuda.get_device_name())" || exit 1
echo "== 1. tests/test_device.py"
timeout 120 $PY -m pytest -q -rs tests/test_device.py 2>&1 | tail -15
echo "== 2. micro profile: cpu, then cuda"
for d in cpu cuda; do
  printf 'results_dir: results/micro_%s\neval: {device: %s}\ntiming: {device: %s}\n' $d $d $d > "$LOGS/micro_$d.yaml"
  [ $d = cuda ] && mkdir -p results/micro_cuda && cp -r results/micro_cpu/weights results/micro_cpu/data results/micro_cuda/ 2>/dev/null
  s=$(date +%s)
  timeout 150 $PY -m snakemake --cores "$CORES" --resources gpu=1 --configfile config/micro.yaml "$LOGS/micro_$d.yaml" \
    --until evaluate evaluate_ood visualize_merges time_latency time_runs time_tokens > "$LOGS/snake_micro_$d.log" 2>&1
  echo "micro $d: rc=$? $(( $(date +%s) - s )) s, $(grep -c 'Finished job' "$LOGS/snake_micro_$d.log") jobs"
done
$PY benchmarks/compare_logits.py results/micro_cpu results/micro_cuda
echo "== 3. paper profile wall time from img/s measured on this GPU"
for b in 64 256; do timeout 60 $PY benchmarks/paper_walltime.py --device cuda --batch $b --batches 5; done
echo "== 4. embedded default: runs evaluated on the CPU (150 training steps), re-evaluated on CUDA"
$PY - "$LOGS/emb.yaml" <<'PY'
import sys, yaml
c = yaml.safe_load(open("config/config.yaml")); c["train"]["steps"] = 150; c["results_dir"] = "results/emb_cpu"
yaml.safe_dump(c, open(sys.argv[1], "w"))
PY
s=$(date +%s)
timeout 150 $PY -m snakemake --cores "$CORES" --configfile "$LOGS/emb.yaml" --until evaluate > "$LOGS/snake_emb.log" 2>&1
echo "embedded (cpu): rc=$? $(( $(date +%s) - s )) s, $(grep -c 'Finished job' "$LOGS/snake_emb.log") jobs"
timeout 90 $PY benchmarks/device_agreement.py --config "$LOGS/emb.yaml" --device cuda
