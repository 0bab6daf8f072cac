#!/usr/bin/env bash
# effhub's GPU check (docs/gpu-check.md): on a CUDA machine, in at most about 5 minutes, run the `gpu`-marked tests
# and the quick benchmarks with bf16 mixed precision, and write one JSON summary.
#
#   scripts/gpu_check.sh                     # summary in gpu-check/summary.json (make gpu-check)
#   GPU_CHECK_OUT=/tmp/gc GPU_CHECK_BENCHMARKS="overhead videoiq" scripts/gpu_check.sh
#
# Environment: PYTHON (default: python3), GPU_CHECK_OUT (default: gpu-check), GPU_CHECK_BENCHMARKS (default:
# "overhead videoiq adashare"), GPU_CHECK_SECONDS (the whole budget, default 300). Without CUDA it stops at once with
# exit status 2 and a summary that says so. Exit status 1 when a test or a benchmark failed or ran out of time.
set -u
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
OUT=${GPU_CHECK_OUT:-gpu-check}
BENCHMARKS=${GPU_CHECK_BENCHMARKS:-overhead videoiq adashare}
BUDGET=${GPU_CHECK_SECONDS:-300}
mkdir -p "$OUT"
START=$(date +%s)
export PYTHONPATH="$PWD/src:$PWD${PYTHONPATH:+:$PYTHONPATH}" EFFHUB_MIXED_PRECISION=bf16 HF_HUB_OFFLINE=1

"$PYTHON" - "$OUT/device.json" <<'EOF'
import json, sys
import torch
info = {"torch": torch.__version__, "cuda": torch.cuda.is_available(), "cuda_version": torch.version.cuda}
if info["cuda"]:
    info.update(device=torch.cuda.get_device_name(0), bf16=torch.cuda.is_bf16_supported(),
                device_count=torch.cuda.device_count())
json.dump(info, open(sys.argv[1], "w"), indent=2)
EOF
if ! "$PYTHON" -c "import json, sys; sys.exit(0 if json.load(open('$OUT/device.json'))['cuda'] else 1)"; then
    "$PYTHON" - "$OUT" <<'EOF'
import json, sys
out = sys.argv[1]
device = json.load(open(f"{out}/device.json"))
json.dump({"status": "no-cuda", "device": device,
           "problem": "torch.cuda.is_available() is False: no CUDA device, or a CPU-only torch build",
           "fix": "run on a machine with an NVIDIA GPU and a CUDA build of torch, e.g. make install "
                  "TORCH_SPEC='torch==<version>' PIP_TORCH_ARGS='--index-url https://download.pytorch.org/whl/cu128'"},
          open(f"{out}/summary.json", "w"), indent=2)
EOF
    echo "gpu_check: error: no CUDA device (torch $("$PYTHON" -c 'import torch; print(torch.__version__)') sees none);" \
         "run it on a GPU machine with a CUDA build of torch. Summary: $OUT/summary.json" >&2
    exit 2
fi

remaining() { echo $(( BUDGET - ($(date +%s) - START) )); }

# 1. the gpu-marked tests
T0=$(date +%s)
timeout "$(remaining)" "$PYTHON" -m pytest -m gpu -q -p no:cacheprovider --junitxml="$OUT/gpu-tests.xml" \
    > "$OUT/gpu-tests.log" 2>&1
TESTS_RC=$?
TESTS_SECONDS=$(( $(date +%s) - T0 ))
echo "gpu_check: gpu-marked tests: exit $TESTS_RC in ${TESTS_SECONDS}s (log: $OUT/gpu-tests.log)"

# 2. the quick benchmarks, in bf16 (EFFHUB_MIXED_PRECISION), each with what is left of the budget
: > "$OUT/benchmarks.tsv"
for NAME in $BENCHMARKS; do
    LEFT=$(remaining)
    if [ "$LEFT" -le 5 ]; then
        printf '%s\t%s\t%s\n' "$NAME" "not-run" 0 >> "$OUT/benchmarks.tsv"
        continue
    fi
    T0=$(date +%s)
    timeout "$LEFT" "$PYTHON" -c "import sys; from benchmarks.$NAME.run import main; sys.exit(main(sys.argv[1:]))" \
        --quick --output "$OUT/$NAME.json" > "$OUT/$NAME.log" 2>&1
    RC=$?
    printf '%s\t%s\t%s\n' "$NAME" "$RC" $(( $(date +%s) - T0 )) >> "$OUT/benchmarks.tsv"
    echo "gpu_check: benchmark $NAME: exit $RC in $(( $(date +%s) - T0 ))s (log: $OUT/$NAME.log)"
done

"$PYTHON" - "$OUT" "$TESTS_RC" "$TESTS_SECONDS" "$(( $(date +%s) - START ))" "$BUDGET" <<'EOF'
import json, sys
import xml.etree.ElementTree as ET
out, tests_rc, tests_seconds, total, budget = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), \
    int(sys.argv[5])
tests = {"exit": tests_rc, "seconds": tests_seconds, "timed_out": tests_rc == 124}
try:
    suite = ET.parse(f"{out}/gpu-tests.xml").getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    counts = {key: int(suite.get(key, 0)) for key in ("tests", "failures", "errors", "skipped")}
    tests.update(counts, passed=counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"])
except (OSError, ET.ParseError, AttributeError):
    tests["report"] = "missing"
benchmarks = {}
for line in open(f"{out}/benchmarks.tsv"):
    name, rc, seconds = line.rstrip("\n").split("\t")
    entry = {"status": "not-run (budget spent)" if rc == "not-run" else
             "ok" if rc == "0" else "timed-out" if rc == "124" else f"failed (exit {rc})", "seconds": int(seconds)}
    try:
        entry["results"] = json.load(open(f"{out}/{name}.json"))
    except (OSError, ValueError):
        pass
    benchmarks[name] = entry
ok = tests_rc in (0, 5) and all(b["status"] == "ok" for b in benchmarks.values())  # 5: no gpu test collected
summary = {"status": "ok" if ok else "failed", "device": json.load(open(f"{out}/device.json")),
           "mixed_precision": "bf16", "seconds": total, "budget_seconds": budget, "gpu_tests": tests,
           "benchmarks": benchmarks}
json.dump(summary, open(f"{out}/summary.json", "w"), indent=2)
print(f"gpu_check: {summary['status']} in {total}s; summary: {out}/summary.json")
sys.exit(0 if ok else 1)
EOF
