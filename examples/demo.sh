#!/usr/bin/env bash
# The whole hashkit pipeline on the built-in example photo set (run by `make demo`).
# Usage: examples/demo.sh [OUTPUT_DIR]   (default demo-output; it is recreated from scratch)
set -euo pipefail
OUT=${1:-demo-output}
HERE=$(cd "$(dirname "$0")" && pwd)
BITS=64
SIZE=128

rm -rf "$OUT"
mkdir -p "$OUT"
step() { printf '\n== [%ss] %s\n' "$SECONDS" "$*"; }

step "render the example photo set (5 scenes x 14 views; truth.csv is for evaluation only)"
python "$HERE/render_scenes.py" "$OUT/set" --scenes 5 --views 14 --size 640x480 --seed 0

step "hashkit reconstruct: COLMAP models and mined pairs, no labels"
hashkit reconstruct "$OUT/set/photos" -o "$OUT/work"

step "hashkit train: BCDH from the mined pairs, the peer Bi-half from the photos alone, and the LSH baseline"
hashkit train --pairs "$OUT/work/pairs.h5" -o "$OUT/bcdh.pt" --bits $BITS --seed 0   # bcdh's defaults
hashkit train --images "$OUT/set/photos" -o "$OUT/bihalf.pt" --method bihalf --bits $BITS \
    --image-size $SIZE --epochs 3 --batch-size 64 --seed 0
hashkit train --pairs "$OUT/work/pairs.h5" -o "$OUT/lsh.pt" --method lsh --bits $BITS \
    --image-size $SIZE --seed 0

for method in bcdh bihalf lsh; do
    step "hashkit encode + query: $method"
    hashkit encode "$OUT/$method.pt" "$OUT/set/photos" -o "$OUT/$method-codes.h5"
    hashkit query --db "$OUT/$method-codes.h5" --queries "$OUT/$method-codes.h5" -k 10 \
        -o "$OUT/$method-results.h5" --ground-truth "$OUT/set/truth.csv" --metrics "$OUT/$method-metrics.json" \
        --report "$OUT/$method-report"
done
hashkit compare "$OUT/bcdh-metrics.json" "$OUT/bihalf-metrics.json" "$OUT/lsh-metrics.json" \
    --plot "$OUT/bcdh-vs-peers.png"

step "summary (total ${SECONDS}s)"
python "$HERE/demo_table.py" --pairs "$OUT/work/pairs.h5" --truth "$OUT/set/truth.csv" \
    --metrics "$OUT/bcdh-metrics.json" "$OUT/bihalf-metrics.json" "$OUT/lsh-metrics.json"
echo "pictures: $OUT/{bcdh,bihalf,lsh}-report/index.html, $OUT/bcdh-vs-peers.png"
