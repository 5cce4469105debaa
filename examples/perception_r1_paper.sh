#!/usr/bin/env bash
# The paper's layout on two 8-GPU nodes: the judge (Qwen2.5-32B-Instruct-AWQ) served by vLLM on node A,
# GRPO of Qwen2.5-VL-7B with colocated vLLM rollouts on node B.
#
#   node A:  bash examples/perception_r1_paper.sh judge
#   node B:  JUDGE_HOST=<node A address> bash examples/perception_r1_paper.sh train
set -euo pipefail
ROLE=${1:?usage: perception_r1_paper.sh judge|train}
JUDGE_PORT=${JUDGE_PORT:-8000}
export JUDGE_API_KEY=${JUDGE_API_KEY:-sk-local-judge}   # any string both sides agree on

case "$ROLE" in
  judge)
    # prefix caching makes the long few-shot system prompt nearly free after the first request
    vllm serve Qwen/Qwen2.5-32B-Instruct-AWQ \
      --tensor-parallel-size 8 --gpu-memory-utilization 0.9 --enable-prefix-caching \
      --max-model-len 16384 --port "$JUDGE_PORT" --api-key "$JUDGE_API_KEY"
    ;;
  train)
    : "${JUDGE_HOST:?set JUDGE_HOST to the address of the judge node}"
    DATA=${DATA:-data/annotated.jsonl}      # from `pr annotate` (or converted from the authors' parquet)
    OUT=${OUT:-runs/perception-r1-7b}
    accelerate launch --config_file examples/accelerate/zero3_8gpu.yaml "$(command -v pr)" train \
      --config examples/train_paper.yaml \
      -m qwen2.5-vl-7b --data "$DATA" -o "$OUT" \
      --judge-base-url "http://$JUDGE_HOST:$JUDGE_PORT/v1" --resume
    ;;
  *)
    echo "unknown role $ROLE" >&2; exit 2 ;;
esac
