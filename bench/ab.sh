#!/usr/bin/env bash
# Two conveyor binaries on the same tasks, runs interleaved (A, B, A, B ...)
# so that drift of the host hits both alike: for checking that a change (a
# refactor) costs no speed. Tasks as in bench/compare.sh: 256 px thumbnails
# (`thumbnail` kind) and 1600 px + sharpen, on FOLDER and on 500 files
# generated from it.
#
#   bench/ab.sh OLD_BINARY NEW_BINARY [FOLDER] [JOBS] [RUNS]
#
# Prints each binary's median wall time per task and input, and NEW's speed
# over OLD's (above 1.00x: NEW is faster).
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
[ $# -ge 2 ] || { sed -n '2,12p' "$0" >&2; exit 2; }
old=$(realpath "$1")
new=$(realpath "$2")
folder=${3:-$here/../shared/corpus/photos}
jobs=${4:-$(nproc)}
runs=${5:-5}
[ -d "$folder" ] || { echo "no folder $folder" >&2; exit 2; }
folder=$(cd "$folder" && pwd)
cd "$here"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "making 500 files from $folder ..." >&2
python3 bench/make_set.py "$folder" "$work/set500" 500

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

# once BINARY PIPELINE INPUT: seconds of one whole run.
once() {
  local out=$work/out start end
  rm -rf "$out"
  start=$(date +%s.%N)
  "$1" run "$2" --quiet --progress never --jobs "$jobs" \
    --set "scan.root=\"$3\"" --set "scan.include=[\"**/*.jpg\", \"**/*.jpeg\", \"**/*.png\"]" \
    --set "save.dir=\"$out\"" --set "save.filename=\"{rel_dir}/{stem}.jpg\"" --force >/dev/null 2>&1
  end=$(date +%s.%N)
  awk -v a="$start" -v b="$end" 'BEGIN {print b - a}'
}

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(date +%F)"
echo "A = $old"
echo "B = $new"
printf '%-34s %10s %10s %8s\n' "task on input ($runs interleaved runs)" "A median" "B median" "B vs A"
for task in thumbs large; do
  pipeline=pipelines/thumbnails-fast.toml
  [ "$task" = large ] && pipeline=pipelines/web-large.toml
  for input in "$folder" "$work/set500"; do
    a=() b=()
    for _ in $(seq "$runs"); do
      a+=("$(once "$old" "$pipeline" "$input")")
      b+=("$(once "$new" "$pipeline" "$input")")
    done
    ma=$(printf '%s\n' "${a[@]}" | median)
    mb=$(printf '%s\n' "${b[@]}" | median)
    label="$task on $(basename "$input")"
    awk -v l="$label" -v a="$ma" -v b="$mb" 'BEGIN {printf "%-34s %9.3fs %9.3fs %7.2fx\n", l, a, b, a / b}'
  done
done
