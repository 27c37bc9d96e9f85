#!/usr/bin/env bash
# Runs on the lent GPU machine (see README "On a GPU machine without network access"):
# installs the carried wheel, runs the test suite and the benchmark, logs under $OUT.
#   scripts/device_check.sh [smoke|tests|sanitize|bench|profile|sweep|all] [extra pytest args...]
set -uo pipefail
what=${1:-all}; shift || true
OUT=${OUT:-/tmp/convt3d_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-deps --no-index --force-reinstall dist/*.whl > "$OUT/install.log" 2>&1 \
  || { cat "$OUT/install.log"; exit 1; }
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,temperature.gpu --format=csv > "$OUT/gpu.txt" 2>&1
ROOT=$(pwd)
cd /tmp  # outside the repository root, so the installed wheel is imported, not the source tree
python3 -c "import torch, convt3d_ops; print('torch', torch.__version__, 'convt3d_ops', convt3d_ops.__version__, torch.cuda.get_device_name(0))" | tee -a "$OUT/gpu.txt"
rc=0
if [[ $what == smoke || $what == all ]]; then
  timeout 120 python3 "$ROOT/benchmarks/smoke_hopper.py" 2>&1 | tee "$OUT/smoke.log" || rc=$?
fi
if [[ $what == tests || $what == all ]]; then
  export CONVT3D_TEST_REPORT="$OUT/test_report.txt"
  (cd "$ROOT/tests" && python3 -m pytest -q -rs -p no:cacheprovider --timeout 600 . "$@") > "$OUT/tests.log" 2>&1 || rc=$?
  # a short summary that always fits what comes back: failures, their assertion lines, the counts
  grep -E "^(FAILED|ERROR) |^E  .*(Error|assert)|passed|failed" "$OUT/tests.log" | head -n 200 > "$OUT/tests_summary.txt"
  tail -n 40 "$OUT/tests.log"
fi
if [[ $what == bench || $what == all ]]; then
  python3 -m convt3d_ops.bench --json "$OUT/bench.json" 2>&1 | tee "$OUT/bench.log" || rc=$?
fi
if [[ $what == sanitize || $what == all ]]; then
  timeout 450 bash "$ROOT/scripts/sanitize.sh" "$OUT/sanitizer" || rc=$?
fi
if [[ $what == profile || $what == all ]]; then
  for mode in fp32 ieee; do python3 "$ROOT/benchmarks/profile_headline.py" --mode $mode; done > "$OUT/profile.log" 2>&1 || rc=$?
fi
if [[ $what == sweep ]]; then
  python3 -m convt3d_ops.bench --sweep --json "$OUT/bench_sweep.json" "$@" 2>&1 | tee "$OUT/bench_sweep.log" || rc=$?
fi
exit $rc
