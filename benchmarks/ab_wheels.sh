#!/usr/bin/env bash
# A/B timing of kernel versions on the GPU machine: one wheel per folder under dist/ (dist/v4,
# dist/v5, ...), each installed in turn and timed by ours_times.py; logs under $OUT.
#   [MODES=fp32,bf16] bash benchmarks/ab_wheels.sh "headline,ch32" "v4 v5" [ncu]
# With "ncu" as the third argument, also a few ncu metrics of the Hopper kernel for each version
# (the headline problem) in the same file.
# Order matters: in v18's runs the first wheel of a round was often the faster one, so compare ABBA
# orders ("vA vB vB vA vA vB") and more than one round (NOTES v18).
set -uo pipefail
problems=$1; versions=$2; profile=${3:-}; modes=${MODES:-fp32}
ROOT=$(pwd); OUT=${OUT:-/tmp/ab_out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem --format=csv,noheader > "$OUT/gpu.txt"
for v in $versions; do
  python3 -m pip install -q --no-deps --no-index --force-reinstall "$ROOT"/dist/$v/*.whl > /dev/null 2>&1 || { echo "install $v failed"; continue; }
  (cd /tmp && python3 "$ROOT/benchmarks/ours_times.py" --problems "$problems" --modes "$modes" --label "$v") 2>&1 | tee -a "$OUT/times.txt"
  if [[ $profile == ncu ]]; then
    # which unit is the limit: tensor pipe, L2 bytes, shared-memory banks (reads: wgmma operands;
    # writes: TMA fills), DRAM; with the SM clock the profile ran at
    (cd /tmp && timeout 240 ncu -k regex:hopper_conv_kernel -c 1 --metrics \
      sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_elapsed,lts__t_bytes.sum.per_second,lts__t_bytes.sum.pct_of_peak_sustained_elapsed,l1tex__data_bank_reads.avg.pct_of_peak_sustained_elapsed,l1tex__data_bank_writes.avg.pct_of_peak_sustained_elapsed,dram__bytes.sum.per_second,sm__cycles_elapsed.avg.per_second,gpu__time_duration.sum \
      python3 "$ROOT/benchmarks/ours_times.py" --problems headline --label "$v") 2>&1 | grep -E "^ +[a-z0-9_]+__|hopper_conv|ERROR" \
      | sed "s/^/ncu $v /" | tee -a "$OUT/times.txt"
  fi
done
