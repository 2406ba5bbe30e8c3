#!/usr/bin/env bash
# Keep an index current from cron: encode the photos added since the last run into the
# existing code store (appending; photos already there are skipped), encode any new query
# photos, then rerun the batch of queries.
#
# Usage: update_index.sh MODEL PHOTOS_DIR QUERY_PHOTOS_DIR OUT_DIR [K]
# Writes OUT_DIR/index.h5, OUT_DIR/queries.h5, OUT_DIR/results.h5 and OUT_DIR/last-run.json.
# Silent on success (set HASHKIT_VERBOSE=1 to print the summaries); on failure hashkit's one
# error line goes to stderr and the exit code is non-zero, which is what cron mails you.
set -euo pipefail
if [ $# -lt 4 ]; then
    echo "usage: $0 MODEL PHOTOS_DIR QUERY_PHOTOS_DIR OUT_DIR [K]" >&2
    exit 2
fi
MODEL=$1 PHOTOS=$2 QUERY_PHOTOS=$3 OUT=$4 K=${5:-100}
mkdir -p "$OUT"

{
    echo '{"index":'
    hashkit encode "$MODEL" "$PHOTOS" -o "$OUT/index.h5" --json
    echo ',"queries":'
    hashkit encode "$MODEL" "$QUERY_PHOTOS" -o "$OUT/queries.h5" --json
    echo ',"search":'
    hashkit query --db "$OUT/index.h5" --queries "$OUT/queries.h5" -k "$K" -o "$OUT/results.h5" --overwrite --json
    echo '}'
} > "$OUT/last-run.json.tmp"
mv "$OUT/last-run.json.tmp" "$OUT/last-run.json"

if [ "${HASHKIT_VERBOSE:-0}" = 1 ]; then
    cat "$OUT/last-run.json"
fi
