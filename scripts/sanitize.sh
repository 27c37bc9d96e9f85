#!/usr/bin/env bash
# Runs every CUDA kernel (benchmarks/sanitize_kernels.py) under compute-sanitizer's
# memcheck, racecheck, initcheck and synccheck; prints each tool's error summary.
# initcheck does not count TMA stores as writes: it reports the GroupNorm apply kernel's reads of the
# 16-bit stride-1 outputs the Hopper kernel stored that way (851,776 here in v20; benchmarks/NOTES.md v20,
# benchmarks/probes/initcheck_tma_store.py). Look for reports in other kernels.
# On the GPU machine, after installing the wheel:  bash scripts/sanitize.sh [outdir]
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUTDIR=${1:-${OUT:-/tmp}/sanitizer}
mkdir -p "$OUTDIR"
cd /tmp  # import the installed wheel, not the source tree
rc=0
# first without a tool, with the caching allocator's books: what is still allocated at exit, and where from
python3 "$ROOT/benchmarks/sanitize_kernels.py" > "$OUTDIR/plain.log" 2>&1 || rc=1
echo "plain run: $(grep -E 'live CUDA blocks' "$OUTDIR/plain.log") $(tail -n 1 "$OUTDIR/plain.log")"
export PYTORCH_NO_CUDA_MEMORY_CACHING=1  # let the tools see every allocation as it is made and freed
for tool in memcheck racecheck initcheck synccheck; do
  extra=""
  [[ $tool == memcheck ]] && extra="--leak-check full"
  compute-sanitizer --tool $tool $extra --print-limit 20 python3 "$ROOT/benchmarks/sanitize_kernels.py" \
    > "$OUTDIR/$tool.log" 2>&1 || rc=1
  echo "$tool: $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY|LEAK SUMMARY' "$OUTDIR/$tool.log" | tr '\n' ' ') $(tail -n 1 "$OUTDIR/$tool.log")"
done
exit $rc
