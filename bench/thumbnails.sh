#!/usr/bin/env bash
# Throughput of the thumbnails job: conveyor in each execution mode, the
# `thumbnail` kind (shrink-on-load), and Pillow's Image.thumbnail() in a
# multiprocessing.Pool with as many processes, on the same files.
#
#   bench/thumbnails.sh [FOLDER] [RUNS] [JOBS]
#
# FOLDER defaults to ../shared/corpus/photos (21 real photos), RUNS to 5,
# JOBS to the number of cores. Each row is the median wall time of RUNS runs
# of the whole process (start-up, scan, decode, resize, encode, write).
# Outputs go to a temp folder that is removed afterwards.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
folder=${1:-$here/../shared/corpus/photos}
runs=${2:-5}
jobs=${3:-$(nproc)}
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

if ! python3 -c "import PIL" 2>/dev/null; then
  echo "installing Pillow with pip ..." >&2
  python3 -m pip install --quiet Pillow >&2 || echo "could not install Pillow; its row is skipped" >&2
fi

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

# time_runs NAME COMMAND...: runs the command RUNS times into $out/thumbs,
# prints a row and remembers the rate in rate_NAME.
declare -A rates
time_runs() {
  local name=$1
  shift
  local times=()
  for _ in $(seq "$runs"); do
    rm -rf "$out/thumbs"
    local start end
    start=$(date +%s.%N)
    "$@"
    end=$(date +%s.%N)
    times+=("$(awk -v a="$start" -v b="$end" 'BEGIN {print b - a}')")
  done
  local n med rate
  # Images only: conveyor also keeps its resume journal under the output.
  n=$(find "$out/thumbs" -type f -not -path "*/.conveyor-state/*" | wc -l)
  med=$(printf '%s\n' "${times[@]}" | median)
  rate=$(awk -v n="$n" -v t="$med" 'BEGIN {print n / t}')
  rates[$name]=$rate
  printf '%-34s %7d %8.3fs %10.1f\n' "$name" "$n" "$med" "$rate"
}

conveyor() {
  local pipeline=$1
  shift
  local sets=()
  for stage in load thumb jpeg save; do
    if grep -q "^name = \"$stage\"" "$pipeline"; then
      sets+=(--set "$stage.workers=$jobs")
    fi
  done
  "$bin" run "$pipeline" --quiet --set "scan.root=\"$folder\"" --set "save.dir=\"$out/thumbs\"" \
    "${sets[@]}" "$@" 2>/dev/null
}

echo "thumbnails benchmark: $folder, $runs runs each, $jobs jobs"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')"
printf '%-34s %7s %9s %10s\n' "run" images median images/s
for mode in inline threads processes; do
  time_runs "decode+resize, $mode" conveyor pipelines/thumbnails.toml --mode "$mode"
done
# Only the decoder isolated: decoded pixels then cross from the worker to
# conveyor for every image, which shows what that copy costs.
time_runs "decode+resize, load=processes" conveyor pipelines/thumbnails.toml --mode load=processes
for mode in threads processes; do
  time_runs "thumbnail kind, $mode" conveyor pipelines/thumbnails-fast.toml --mode "$mode"
done
if python3 -c "import PIL" 2>/dev/null; then
  time_runs "Pillow thumbnail(), Pool($jobs)" python3 bench/pillow_bench.py thumbs "$folder" "$out/thumbs" "$jobs"
  pillow=${rates["Pillow thumbnail(), Pool($jobs)"]}
  echo
  echo "ratio to Pillow (images/s over Pillow's images/s):"
  for name in "decode+resize, threads" "decode+resize, processes" "thumbnail kind, threads" "thumbnail kind, processes"; do
    awk -v r="${rates[$name]}" -v p="$pillow" -v n="$name" 'BEGIN {printf "  %-30s %.2fx\n", n, r / p}'
  done
fi
