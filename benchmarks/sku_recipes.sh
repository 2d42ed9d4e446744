#!/usr/bin/env bash
# SKU recipes on the default model, chosen on validation: stage 1 on the demo data's train split,
# λ scored by `negate --pick` on the bundled suite's validation split (never its test split).
#   A: the paper's losses with the retention-signed preservation term (the previous demo recipe)
#   B: A + negation-aware terms (KL to θ₀ and a bounded harmful-answer term, both at θ₀ − λτ)
#   C: A's settings on larger models' human-judged harmful HarmBench answers (benchmarks/stage1_answers.py;
#      needs ../shared/data), sequences cut at 128 tokens; λ 1 and 2
#   I: C's settings on hh-rlhf's rejected red-team answers that went along (stage1_answers.py --source hh-rlhf)
#   D: C + negated retention (ε₄ = 1) trained for λ = 1;  F: A's and C's answers mixed;  G: C with ε₃ = −5
#      (F and G trained for λ = 1 too; the later --lambda wins over common[]'s)
# Usage: bash benchmarks/sku_recipes.sh OUT_DIR [STEPS]
set -euo pipefail
OUT=${1:?output folder}; STEPS=${2:-40}
PY=${PY:-.venv/bin/python}
mkdir -p "$OUT"
$PY - "$OUT" <<'PYEOF'
import json, sys
from unlearnkit.data import load_demo, split_pairs
out = sys.argv[1]
for name in ("harmful", "normal"):
    rows = split_pairs(load_demo(name))["train"]
    open(f"{out}/{name}_train.jsonl", "w").write("".join(json.dumps(r) + "\n" for r in rows))
PYEOF
common=(--model default --forget "$OUT/harmful_train.jsonl" --retain "$OUT/normal_train.jsonl" --max-steps "$STEPS"
        --batch-size 4 --lr 5e-4 --lambda 2 --set mismatch_k=2 --set sku_pd_weight=-2.5 --save-steps 20)
for recipe in A B; do
  extra=()
  [ "$recipe" = B ] && extra=(--set sku_negated_retain_weight=1.0 --set sku_negated_forget_weight=0.5)
  [ -d "$OUT/$recipe" ] || /usr/bin/time -f "$recipe stage 1: %e s" $PY -m unlearnkit.cli unlearn --method sku "${common[@]}" "${extra[@]}" --out "$OUT/$recipe"
  [ -d "$OUT/$recipe-negate" ] || /usr/bin/time -f "$recipe negate: %e s" $PY -m unlearnkit.cli negate --harmful "$OUT/$recipe/harmful" \
      --suite standard --lambdas 1,2,4 --pick --out "$OUT/$recipe-negate" || echo "$recipe: no λ kept every limit"
done
if [ -d ../shared/data/harmbench_human_dev ]; then
  mkdir -p "$OUT/jbb"
  [ -f "$OUT/jbb/harmful.jsonl" ] || $PY benchmarks/jbb_answers.py "$OUT/jbb" --exclude "$OUT/harmful_train.jsonl"
  [ -f "$OUT/harmbench_train.jsonl" ] || $PY benchmarks/stage1_answers.py "$OUT/harmbench_train.jsonl" --exclude "$OUT/jbb/harmful.jsonl"
  [ -f "$OUT/hh_train.jsonl" ] || $PY benchmarks/stage1_answers.py "$OUT/hh_train.jsonl" --source hh-rlhf --exclude "$OUT/jbb/harmful.jsonl"
  # common[] names the written answers as --forget; the later --forget wins (argparse keeps the last)
  for recipe in C I; do
    data=$OUT/harmbench_train.jsonl; [ "$recipe" = I ] && data=$OUT/hh_train.jsonl
    [ -d "$OUT/$recipe" ] || /usr/bin/time -f "$recipe stage 1: %e s" $PY -m unlearnkit.cli unlearn --method sku "${common[@]}" \
        --forget "$data" --set max_length=128 --out "$OUT/$recipe"
    [ -d "$OUT/$recipe-negate" ] || $PY -m unlearnkit.cli negate --harmful "$OUT/$recipe/harmful" --suite standard --lambdas 1,2 \
        --pick --out "$OUT/$recipe-negate" || echo "$recipe: no λ kept every limit"
  done
  cat "$OUT/harmful_train.jsonl" "$OUT/harmbench_train.jsonl" > "$OUT/mixed_train.jsonl"
  for recipe in D F G; do
    case $recipe in
      D) extra=(--forget "$OUT/harmbench_train.jsonl" --set sku_negated_retain_weight=1.0); lambdas=1,1.5,2 ;;
      F) extra=(--forget "$OUT/mixed_train.jsonl"); lambdas=1 ;;
      G) extra=(--forget "$OUT/harmbench_train.jsonl" --set sku_pd_weight=-5); lambdas=1 ;;
    esac
    [ -d "$OUT/$recipe" ] || /usr/bin/time -f "$recipe stage 1: %e s" $PY -m unlearnkit.cli unlearn --method sku "${common[@]}" \
        "${extra[@]}" --set max_length=128 --lambda 1 --out "$OUT/$recipe"
    [ -d "$OUT/$recipe-negate" ] || $PY -m unlearnkit.cli negate --harmful "$OUT/$recipe/harmful" --suite standard \
        --lambdas "$lambdas" --pick --out "$OUT/$recipe-negate" || echo "$recipe: no λ kept every limit"
  done
fi
