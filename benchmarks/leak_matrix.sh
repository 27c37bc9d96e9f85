#!/usr/bin/env bash
# Issue 4's leak bisection on the GPU machine (after installing the wheel): benchmarks/leak_baseline.py
# per caller, without a tool and under compute-sanitizer memcheck --leak-check full, all with
# PYTORCH_NO_CUDA_MEMORY_CACHING=1 (frees reach cudaFree). One line per run in $OUT/leak_matrix.txt.
set -uo pipefail
ROOT=$(pwd); OUT=${OUT:-/tmp/leak_out}; mkdir -p "$OUT"
export PYTORCH_NO_CUDA_MEMORY_CACHING=1
cd /tmp
export LEAK_PROBE_SO=/tmp/leak_probe.so  # the ext_* callers' library
nvcc -shared -Xcompiler -fPIC -gencode=arch=compute_90a,code=sm_90a -o $LEAK_PROBE_SO "$ROOT/benchmarks/probes/leak_probe.cu"
for caller in ${LEAK_PLAIN_CALLERS:-none conv portable warm_conv}; do
  echo "plain  $caller: $(python3 "$ROOT/benchmarks/leak_baseline.py" $caller 2>&1 | grep 'not returned')" >> "$OUT/leak_matrix.txt"
done
run_tool() {  # label, caller, environment assignments for the run (optional)
  env "${@:3}" compute-sanitizer --tool memcheck --leak-check full --print-limit 3 python3 \
    "$ROOT/benchmarks/leak_baseline.py" "$2" > "$OUT/tool.log" 2>&1
  echo "tool   $1: $(grep -E "not returned|LEAK SUMMARY|Error" "$OUT/tool.log" | tr '\n' ' ')" >> "$OUT/leak_matrix.txt"
}
for caller in ${LEAK_CALLERS:-none torch portable conv warm_conv sync_conv sync_portable path ext_launch ext_own ext_setattr ext_entry}; do
  run_tool $caller $caller
done
[[ -z ${LEAK_CALLERS:-} ]] && run_tool "conv eager-loading" conv CUDA_MODULE_LOADING=EAGER
rm -f "$OUT/tool.log"
cat "$OUT/leak_matrix.txt"
