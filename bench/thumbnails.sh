#!/usr/bin/env bash
# Throughput of pipelines/thumbnails.toml in each execution mode (--mode MODE
# applies to every stage but the scan; same worker counts in each mode).
#
#   bench/thumbnails.sh [FOLDER] [RUNS]
#
# FOLDER defaults to ../shared/corpus/photos (21 real photos), RUNS to 5.
# Every mode runs the same pipeline on the same files; the median wall time
# of RUNS runs (whole process: start-up, scan, decode, resize, encode, write)
# gives images/s. Outputs go to a temp folder that is removed afterwards.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
folder=${1:-$here/../shared/corpus/photos}
runs=${2:-5}
if [ ! -d "$folder" ]; then
  echo "no folder $folder: pass a folder of photos as the first argument" >&2
  exit 2
fi
folder=$(cd "$folder" && pwd)

cd "$here"
cargo build --release --quiet
bin=$here/target/release/conveyor
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

echo "conveyor thumbnails benchmark: $folder, $runs runs per mode"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')"
# Pillow's figure from NOTES.md for the 21 corpus photos on this machine class.
pillow=39
printf '%-14s %8s %8s %10s %10s\n' mode images median images/s "vs Pillow"
# The last row isolates only the decoder: decoded pixels then cross from the
# worker to conveyor for every image, which shows what that copy costs.
for mode in inline threads processes load=processes; do
  times=()
  for _ in $(seq "$runs"); do
    rm -rf "$out/thumbs"
    start=$(date +%s.%N)
    "$bin" run pipelines/thumbnails.toml --quiet --mode "$mode" \
      --set "scan.root=\"$folder\"" --set "save.dir=\"$out/thumbs\""
    end=$(date +%s.%N)
    times+=("$(awk -v a="$start" -v b="$end" 'BEGIN {print b - a}')")
  done
  n=$(find "$out/thumbs" -type f | wc -l)
  med=$(printf '%s\n' "${times[@]}" | median)
  rate=$(awk -v n="$n" -v t="$med" 'BEGIN {print n / t}')
  ratio=$(awk -v r="$rate" -v p="$pillow" 'BEGIN {printf "%.2fx", r / p}')
  printf '%-14s %8d %7.3fs %10.1f %10s\n' "$mode" "$n" "$med" "$rate" "$ratio"
done
echo
echo "reference (NOTES.md, same machine class, 21 corpus photos, 2 jobs):"
echo "  Pillow thumbnail() in a 2-process Pool: 0.54 s, 39 images/s"
