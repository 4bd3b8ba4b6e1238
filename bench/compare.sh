#!/usr/bin/env bash
# conveyor side by side with Pillow, libvips and ImageMagick, on the same
# files with the same number of jobs, for two tasks:
#   thumbs: 256 px thumbnails, JPEG q85
#   large:  1600 px wide, sharpened, JPEG q85
# on FOLDER and on a generated set of 500 files made from it (crops and
# re-encodes, so start-up costs don't dominate).
#
#   bench/compare.sh [FOLDER] [JOBS] [RUNS]
#   bench/compare.sh --scaling [FOLDER]    conveyor at 1, 2, 4 ... jobs
#
# Peers are installed if missing: Pillow with pip; libvips-tools, imagemagick,
# parallel and time with apt-get. Each row: median wall time of RUNS runs
# (default 3) of the whole command, images/s, peak RSS of the largest single
# process (GNU time), and conveyor's speed over that tool's.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
scaling=false
if [ "${1:-}" = "--scaling" ]; then
  scaling=true
  shift
fi
folder=${1:-$here/../shared/corpus/photos}
jobs=${2:-$(nproc)}
runs=${3:-3}
[ -d "$folder" ] || { echo "no folder $folder" >&2; exit 2; }
folder=$(cd "$folder" && pwd)

need_apt=()
command -v vipsthumbnail >/dev/null || need_apt+=(libvips-tools)
# ImageMagick's own convert (a different `convert` may come first on PATH).
im_convert() { for c in convert-im6.q16 magick /usr/bin/convert convert; do
  command -v "$c" >/dev/null && "$c" -version 2>/dev/null | grep -q ImageMagick && { command -v "$c"; return; }; done; }
[ -n "$(im_convert)" ] || need_apt+=(imagemagick)
command -v parallel >/dev/null || need_apt+=(parallel)
[ -x /usr/bin/time ] || need_apt+=(time)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing ${need_apt[*]} ..." >&2
  apt-get update -qq >/dev/null && apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
python3 -c "import PIL" 2>/dev/null || python3 -m pip install --quiet Pillow
convert=$(im_convert)

cd "$here"
cargo build --release --quiet
bin=$here/target/release/conveyor
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

# measure NAME OUTDIR COMMAND...: prints "seconds images peak_kib" (medians
# of $runs runs) and the row.
declare -A rate
measure() {
  local name=$1 outdir=$2
  shift 2
  local times=() peaks=()
  for _ in $(seq "$runs"); do
    rm -rf "$outdir"
    mkdir -p "$outdir"
    local start end
    start=$(date +%s.%N)
    /usr/bin/time -f "%M" -o "$work/rss" "$@" >/dev/null 2>"$work/err" || { cat "$work/err" >&2; return 1; }
    end=$(date +%s.%N)
    times+=("$(awk -v a="$start" -v b="$end" 'BEGIN {print b - a}')")
    peaks+=("$(tail -n 1 "$work/rss")")
  done
  local n med peak r
  n=$(find "$outdir" -type f \( -name '*.jpg' -o -name '*.jpeg' \) | wc -l)
  med=$(printf '%s\n' "${times[@]}" | median)
  peak=$(printf '%s\n' "${peaks[@]}" | median)
  r=$(awk -v n="$n" -v t="$med" 'BEGIN {print n / t}')
  rate[$name]=$r
  printf '  %-34s %6d %8.3fs %9.1f %9.0f MiB\n' "$name" "$n" "$med" "$r" "$(awk -v k="$peak" 'BEGIN {print k / 1024}')"
}

files() { find "$1" -type f \( -iname '*.jpg' -o -iname '*.jpeg' -o -iname '*.png' \) | sort; }

run_task() {
  local task=$1 input=$2 out=$work/out
  local pipeline vips im
  if [ "$task" = thumbs ]; then
    pipeline=pipelines/thumbnails-fast.toml
  else
    pipeline=pipelines/web-large.toml
  fi
  printf '  %-34s %6s %9s %9s %13s\n' tool images median images/s "peak RSS"
  measure "conveyor" "$out" "$bin" run "$pipeline" --quiet --progress never --jobs "$jobs" \
    --set "scan.root=\"$input\"" --set "scan.include=[\"**/*.jpg\", \"**/*.jpeg\", \"**/*.png\"]" \
    --set "save.dir=\"$out\"" --set "save.filename=\"{rel_dir}/{stem}.jpg\"" --force
  measure "Pillow, Pool($jobs)" "$out" python3 bench/pillow_bench.py "$task" "$input" "$out" "$jobs"
  if [ "$task" = thumbs ]; then
    measure "vipsthumbnail, parallel -j$jobs" "$out" sh -c \
      "$(declare -f files); files '$input' | parallel -j$jobs vipsthumbnail {} -s 256 -o '$out/{/.}.jpg[Q=85]'"
    measure "convert -thumbnail, parallel -j$jobs" "$out" sh -c \
      "$(declare -f files); files '$input' | parallel -q -j$jobs $convert {} -thumbnail 256x256 -quality 85 '$out/{/.}.jpg'"
  else
    measure "vips thumbnail+sharpen, parallel" "$out" sh -c \
      "$(declare -f files); files '$input' | parallel -j$jobs 'vips thumbnail {} $out/{/.}.v 1600 --height 100000 --size down && vips sharpen $out/{/.}.v $out/{/.}.jpg[Q=85] && rm $out/{/.}.v'"
    measure "convert -resize -unsharp, parallel" "$out" sh -c \
      "$(declare -f files); files '$input' | parallel -q -j$jobs $convert {} -resize '1600x>' -unsharp 0x1 -quality 85 '$out/{/.}.jpg'"
  fi
  for peer in "Pillow, Pool($jobs)" "vipsthumbnail, parallel -j$jobs" "convert -thumbnail, parallel -j$jobs" \
    "vips thumbnail+sharpen, parallel" "convert -resize -unsharp, parallel"; do
    [ -n "${rate[$peer]:-}" ] || continue
    awk -v c="${rate[conveyor]}" -v p="${rate[$peer]}" -v n="$peer" 'BEGIN {printf "  conveyor / %-31s %.2fx\n", n, c / p}'
    unset "rate[$peer]"
  done
}

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(date -u +%F)"

if $scaling; then
  echo "conveyor scaling, thumbs task on $folder (thumbnails-fast.toml, workers = auto):"
  printf '  %-34s %6s %9s %9s %13s\n' jobs images median images/s "peak RSS"
  j=1
  while :; do
    measure "--jobs $j" "$work/out" "$bin" run pipelines/thumbnails-fast.toml --quiet --progress never --jobs "$j" \
      --set "scan.root=\"$folder\"" --set "save.dir=\"$work/out\"" --force
    [ "$j" -ge "$(nproc)" ] && break
    j=$((j * 2))
    [ "$j" -gt "$(nproc)" ] && j=$(nproc)
  done
  echo "workers per stage (thumbs task, $(nproc) cores):"
  measure "auto (--jobs $(nproc))" "$work/out" "$bin" run pipelines/thumbnails-fast.toml --quiet --progress never \
    --set "scan.root=\"$folder\"" --set "save.dir=\"$work/out\"" --force
  n=$(nproc)
  measure "every stage workers = $n" "$work/out" "$bin" run pipelines/thumbnails-fast.toml --quiet --progress never \
    --set "thumb.workers=$n" --set "jpeg.workers=$n" --set "save.workers=$n" \
    --set "scan.root=\"$folder\"" --set "save.dir=\"$work/out\"" --force
  for t in 1 2; do for e in 1 2; do
    measure "hand: thumb=$t jpeg=$e save=inline" "$work/out" "$bin" run pipelines/thumbnails-fast.toml --quiet \
      --progress never --set "thumb.workers=$t" --set "jpeg.workers=$e" --mode save=inline \
      --set "scan.root=\"$folder\"" --set "save.dir=\"$work/out\"" --force
  done; done
  exit 0
fi

set500=$work/set500
echo "making 500 files from $folder ..." >&2
python3 bench/make_set.py "$folder" "$set500" 500
for input in "$folder" "$set500"; do
  label=$input
  [ "$input" = "$set500" ] && label="500 generated files"
  for task in thumbs large; do
    echo
    echo "task $task on $label, $jobs jobs, median of $runs:"
    run_task "$task" "$input"
  done
done
