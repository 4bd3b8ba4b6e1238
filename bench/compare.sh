#!/usr/bin/env bash
# conveyor side by side with Pillow, libvips and ImageMagick, on the same
# files with the same number of jobs, for two tasks:
#   thumbs: 256 px thumbnails, JPEG q85
#   large:  1600 px wide, sharpened, JPEG q85
# on FOLDER and on a generated set of 500 files made from it (crops and
# re-encodes, so start-up costs don't dominate).
#
#   bench/compare.sh [FOLDER] [JOBS] [RUNS]
#   bench/compare.sh --scaling [FOLDER] [JOBS] [RUNS]
#   bench/compare.sh --advise [FOLDER] [JOBS] [RUNS]
#   bench/compare.sh --encode [FOLDER] [JOBS] [RUNS]
#   bench/compare.sh --colour [FOLDER] [JOBS] [RUNS]
#   bench/compare.sh --limit [FOLDER] [JOBS] [RUNS]
#   bench/compare.sh --big [FOLDER] [JOBS] [RUNS]
#   bench/compare.sh --memory [FOLDER] [JOBS] [RUNS]
#   bench/compare.sh --gallery [FOLDER] [JOBS] [RUNS]
#   bench/compare.sh --progressive [FOLDER] [JOBS] [RUNS]
#
# The first also runs conveyor in processes mode (ratio to threads mode) and
# compares its peak RSS on 50 and 500 generated files. --scaling runs conveyor
# alone on the 500 files, both tasks: at 1, 2, 4 ... jobs up to the core
# count, then `workers = "auto"` against every stage at the CPU count and
# against every hand-picked combination of worker counts (1, half and all
# the cores) for the costly stages, with the CPU time (user + system) each took.
# --advise checks `conveyor advise` against trying: it advises
# pipelines/thumbnails.toml on FOLDER (timed) and applies the advice, then
# runs the applied file against every configuration --scaling would try (jobs,
# auto, every stage at the CPU count, every hand-picked combination, every
# stage in processes) and prints the advised one's speed over the best other.
# Then a pipeline whose `exec` stage sleeps 50 ms per photo, advised against
# `workers = "auto"`, and one whose `chaos` stage crashes on a photo.
# --encode compares encoders alone: the photos resized to 1600 px PNGs, then
# lossy WebP (q80) and AVIF (q70, speed 6) by conveyor and by Pillow's own
# encoders (libwebp; libavif), with total size and mean PSNR against the PNGs.
#
# --colour times the thumbs task alone on 200 generated files in three
# versions made alike (same crops, JPEG q90 re-encodes by Pillow): untagged
# sRGB, tagged with an sRGB profile, and converted by LittleCMS (Pillow's
# ImageCms) into Adobe RGB with the profile embedded; prints the cost of
# colour management as ratios to the untagged run.
#
# --limit compares JPEG thumbnails with the floor no decoder can go under:
# the CPU time libjpeg-turbo with SIMD (`djpeg -scale 1/8`, Debian's
# libjpeg-turbo-progs) needs to entropy-decode the same JPEGs, spread over
# JOBS cores, against conveyor's wall time for the thumbs task on them; it
# prints conveyor's time over that limit (djpeg's start-up, timed on an 8x8
# JPEG, is taken off). Since no decoder here splits one file over cores, it
# also times each file alone and prints conveyor's time over the larger of
# the limit and the longest file. Pillow's Pool runs on the same JPEGs, and
# Pillow's time over that bound is the most any tool that decodes with
# libjpeg could gain over Pillow there: a goal above it can't be met.
# Last, djpeg at the scales the `thumbnail` kind decodes each file at (at
# least twice the thumbnail, as Pillow's draft does): the decoding the task
# itself needs, and conveyor's time over that.
#
# --big makes one 48 MP JPEG (8000x6000, the largest photo scaled up) and
# runs decode, sharpen (sigma 2), blur, JPEG encode on it with --jobs 1 and
# --jobs JOBS: one item alone, so the second can only be faster by splitting
# the image's pixel work over idle cores; it prints the speed-up.
#
# --memory makes 38 wallpapers (bench/make_wallpapers.py: 22 JPEGs, 16 PNGs,
# up to 5120x2880) and runs the large task on them with --jobs 4, without
# and with --memory 300MiB; it prints peak RSS and the time ratio.
#
# --gallery runs pipelines/web-gallery.toml (thumbnails, sharpened and
# watermarked web sizes, a manifest) on FOLDER in threads and in processes
# mode and prints processes' speed over threads'.
#
# --progressive makes progressive JPEGs of the JPEGs in FOLDER, enlarged to
# at least 4200 px wide (Pillow, q90, libjpeg's scan script), large enough
# that 256 px thumbnails decode them at 1/8 scale, and runs the thumbs task
# on them: conveyor against Pillow's Pool and djpeg -scale 1/8's CPU time.
#
# FEATURES=nasm bench/compare.sh ... times conveyor built with those cargo
# features (nasm: libjpeg-turbo's SIMD, for JPEG decoding in thumbnails and
# for baseline JPEG encoding).
#
# Peers are installed if missing: Pillow with pip; libvips-tools, imagemagick,
# parallel and time with apt-get. Each row: median wall time of RUNS runs
# (default 3) of the whole command, images/s, peak RSS of the largest single
# process (GNU time), and conveyor's speed over that tool's.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
scaling=false
encode=false
colour=false
limit=false
big=false
memory=false
gallery=false
progressive=false
advise=false
if [ "${1:-}" = "--scaling" ]; then
  scaling=true
  shift
elif [ "${1:-}" = "--advise" ]; then
  advise=true
  shift
elif [ "${1:-}" = "--encode" ]; then
  encode=true
  shift
elif [ "${1:-}" = "--colour" ]; then
  colour=true
  shift
elif [ "${1:-}" = "--limit" ]; then
  limit=true
  shift
elif [ "${1:-}" = "--big" ]; then
  big=true
  shift
elif [ "${1:-}" = "--memory" ]; then
  memory=true
  shift
elif [ "${1:-}" = "--gallery" ]; then
  gallery=true
  shift
elif [ "${1:-}" = "--progressive" ]; then
  progressive=true
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
command -v djpeg >/dev/null || need_apt+=(libjpeg-turbo-progs)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing ${need_apt[*]} ..." >&2
  apt-get update -qq >/dev/null && apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
python3 -c "import PIL" 2>/dev/null || python3 -m pip install --quiet Pillow
convert=$(im_convert)

cd "$here"
# FEATURES=nasm (or any list cargo takes) times a build with those features,
# kept apart from the default build's binary.
if [ -n "${FEATURES:-}" ]; then
  cargo build --release --quiet --features "$FEATURES" --target-dir "$here/target/bench-features"
  bin=$here/target/bench-features/release/conveyor
else
  cargo build --release --quiet
  bin=$here/target/release/conveyor
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

# measure NAME OUTDIR COMMAND...: prints "seconds images peak_kib" (medians
# of $runs runs) and the row.
declare -A rate cpu_of peak_of
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
  last_peak=$peak
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
  measure "conveyor --mode processes" "$out" "$bin" run "$pipeline" --quiet --progress never --jobs "$jobs" \
    --set "scan.root=\"$input\"" --set "scan.include=[\"**/*.jpg\", \"**/*.jpeg\", \"**/*.png\"]" \
    --set "save.dir=\"$out\"" --set "save.filename=\"{rel_dir}/{stem}.jpg\"" --force --mode processes
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
  awk -v c="${rate[conveyor]}" -v p="${rate[conveyor --mode processes]}" \
    'BEGIN {printf "  processes mode / threads mode             %.2fx\n", p / c}'
  unset "rate[conveyor --mode processes]"
  for peer in "Pillow, Pool($jobs)" "vipsthumbnail, parallel -j$jobs" "convert -thumbnail, parallel -j$jobs" \
    "vips thumbnail+sharpen, parallel" "convert -resize -unsharp, parallel"; do
    [ -n "${rate[$peer]:-}" ] || continue
    awk -v c="${rate[conveyor]}" -v p="${rate[$peer]}" -v n="$peer" 'BEGIN {printf "  conveyor / %-31s %.2fx\n", n, c / p}'
    unset "rate[$peer]"
  done
}

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(date -u +%F)"
echo "conveyor build: $([ -n "${FEATURES:-}" ] && echo "--features $FEATURES" || echo "default features")"

# conveyor NAME TASK INPUT ARGS...: one measured conveyor run of TASK.
conveyor_run() {
  local name=$1 task=$2 input=$3
  shift 3
  local pipeline=pipelines/thumbnails-fast.toml
  [ "$task" = large ] && pipeline=pipelines/web-large.toml
  measure "$name" "$work/out" "$bin" run "$pipeline" --quiet --progress never \
    --set "scan.root=\"$input\"" --set "save.dir=\"$work/out\"" --force "$@"
}

# Configurations compared in one table run interleaved: each round runs every
# one once, so a slow spell of the machine hits them all alike.
cfg_names=()
declare -A cfg_args cfg_pipe
# add_config NAME ARGS...: a configuration of the task's pipeline; with
# cfg_pipe[NAME] set, of that pipeline file instead.
add_config() {
  local name=$1
  shift
  cfg_names+=("$name")
  cfg_args[$name]=""
  if [ $# -gt 0 ]; then cfg_args[$name]=$(printf '%q ' "$@"); fi
}
# run_configs TASK INPUT: run the registered configurations, print a row each.
run_configs() {
  local task=$1 input=$2 out=$work/out task_pipeline=pipelines/thumbnails-fast.toml pipeline
  [ "$task" = large ] && task_pipeline=pipelines/web-large.toml
  [ -f "$task" ] && task_pipeline=$task
  local -A t_all=() p_all=() c_all=()
  local name start end med peak cpu r n kib user sys
  local -a args
  for _ in $(seq "$runs"); do
    for name in "${cfg_names[@]}"; do
      eval "args=(${cfg_args[$name]})"
      pipeline=${cfg_pipe[$name]:-$task_pipeline}
      rm -rf "$out"
      mkdir -p "$out"
      start=$(date +%s.%N)
      /usr/bin/time -f "%M %U %S" -o "$work/rss" "$bin" run "$pipeline" --quiet --progress never \
        --set "scan.root=\"$input\"" --set "save.dir=\"$out\"" --force "${args[@]}" \
        >/dev/null 2>"$work/err" || { cat "$work/err" >&2; return 1; }
      end=$(date +%s.%N)
      t_all[$name]+="$(awk -v a="$start" -v b="$end" 'BEGIN {print b - a}') "
      read -r kib user sys < <(tail -n 1 "$work/rss")
      p_all[$name]+="$kib "
      c_all[$name]+="$(awk -v u="$user" -v s="$sys" 'BEGIN {print u + s}') "
    done
  done
  n=$(find "$out" -type f -name '*.jpg' | wc -l)
  for name in "${cfg_names[@]}"; do
    med=$(printf '%s\n' ${t_all[$name]} | median)
    peak=$(printf '%s\n' ${p_all[$name]} | median)
    cpu=$(printf '%s\n' ${c_all[$name]} | median)
    r=$(awk -v n="$n" -v t="$med" 'BEGIN {print n / t}')
    rate[$name]=$r
    cpu_of[$name]=$cpu
    peak_of[$name]=$peak
    printf '  %-34s %6d %8.3fs %9.1f %9.0f MiB %8.2fs\n' "$name" "$n" "$med" "$r" "$(awk -v k="$peak" 'BEGIN {print k / 1024}')" "$cpu"
  done
  cfg_names=()
  cfg_pipe=()
}

# enc_measure NAME OUTDIR COMMAND...: median time of $runs runs, then the
# row: files, time, images/s, total size, mean PSNR against the source PNGs.
enc_measure() {
  local name=$1 outdir=$2
  shift 2
  local times=() start end med n score
  for _ in $(seq "$runs"); do
    rm -rf "$outdir"
    mkdir -p "$outdir"
    start=$(date +%s.%N)
    "$@" >/dev/null 2>"$work/err" || { cat "$work/err" >&2; return 1; }
    end=$(date +%s.%N)
    times+=("$(awk -v a="$start" -v b="$end" 'BEGIN {print b - a}')")
  done
  med=$(printf '%s\n' "${times[@]}" | median)
  n=$(find "$outdir" -type f -not -path '*/.*' | wc -l)
  score=$(python3 bench/encode_bench.py score "$src1600" "$outdir")
  printf '  %-30s %5d %8.3fs %9.2f %9.2f MiB %7s dB\n' "$name" "$n" "$med" \
    "$(awk -v n="$n" -v t="$med" 'BEGIN {print n / t}')" \
    "$(awk -v b="${score% *}" 'BEGIN {print b / 1048576}')" "${score#* }"
}

# interleaved NAME... : with `cmd_of[NAME]` set, run each once per round for
# $runs rounds; print median wall time, peak RSS and CPU time of each.
declare -A cmd_of wall_of
interleaved() {
  local -A t_all=() p_all=() c_all=()
  local name start end kib user sys
  for _ in $(seq "$runs"); do
    for name in "$@"; do
      rm -rf "$work/out"
      start=$(date +%s.%N)
      eval "/usr/bin/time -f '%M %U %S' -o '$work/rss' ${cmd_of[$name]}" >/dev/null 2>"$work/err" \
        || { cat "$work/err" >&2; return 1; }
      end=$(date +%s.%N)
      t_all[$name]+="$(awk -v a="$start" -v b="$end" 'BEGIN {print b - a}') "
      read -r kib user sys < <(tail -n 1 "$work/rss")
      p_all[$name]+="$kib "
      c_all[$name]+="$(awk -v u="$user" -v s="$sys" 'BEGIN {print u + s}') "
    done
  done
  printf '  %-40s %9s %13s %9s\n' run median "peak RSS" "CPU time"
  for name in "$@"; do
    wall_of[$name]=$(printf '%s\n' ${t_all[$name]} | median)
    peak_of[$name]=$(printf '%s\n' ${p_all[$name]} | median)
    cpu_of[$name]=$(printf '%s\n' ${c_all[$name]} | median)
    printf '  %-40s %8.3fs %9.0f MiB %8.2fs\n' "$name" "${wall_of[$name]}" \
      "$(awk -v k="${peak_of[$name]}" 'BEGIN {print k / 1024}')" "${cpu_of[$name]}"
  done
}

if $big; then
  src=$work/big
  mkdir -p "$src"
  largest=$(find "$folder" -maxdepth 1 -type f \( -iname '*.jpg' -o -iname '*.jpeg' \) -printf '%s %p\n' \
    | sort -n | tail -n 1 | cut -d' ' -f2-)
  python3 -c "
import sys
from PIL import Image
Image.open(sys.argv[1]).convert('RGB').resize((8000, 6000), Image.BICUBIC).save(sys.argv[2], quality=90)
" "$largest" "$src/big48.jpg"
  cat >"$work/big.toml" <<TOML
[[stage]]
name = "scan"
kind = "scan"
root = "$src"

[[stage]]
name = "load"
kind = "decode"

[[stage]]
name = "crisp"
kind = "sharpen"
sigma = 2.0

[[stage]]
name = "soft"
kind = "blur"
sigma = 1.0

[[stage]]
name = "jpeg"
kind = "encode"
format = "jpeg"

[[stage]]
name = "save"
kind = "write"
dir = "$work/out"
TOML
  for j in 1 "$jobs"; do
    cmd_of["--jobs $j"]="$bin run $work/big.toml --quiet --progress never --force --jobs $j"
  done
  echo
  echo "one 48 MP JPEG: decode, sharpen sigma 2, blur, encode; median of $runs interleaved rounds:"
  interleaved "--jobs 1" "--jobs $jobs"
  awk -v a="${wall_of[--jobs 1]}" -v b="${wall_of[--jobs $jobs]}" -v j="$jobs" \
    'BEGIN {printf "  --jobs %d over --jobs 1                   %.2fx faster\n", j, a / b}'
  exit 0
fi

if $memory; then
  walls=$work/wallpapers
  echo "making 38 wallpapers from $folder ..." >&2
  python3 bench/make_wallpapers.py "$folder" "$walls"
  common="$bin run pipelines/web-large.toml --quiet --progress never --force --jobs 4 --set 'scan.root=\"$walls\"' --set 'save.dir=\"$work/out\"'"
  cmd_of["--jobs 4"]="$common"
  cmd_of["--jobs 4 --memory 300MiB"]="$common --memory 300MiB"
  echo
  echo "large task on 38 wallpapers (16 PNGs, up to 5120x2880), median of $runs interleaved rounds:"
  interleaved "--jobs 4" "--jobs 4 --memory 300MiB"
  awk -v a="${wall_of[--jobs 4]}" -v b="${wall_of[--jobs 4 --memory 300MiB]}" \
    'BEGIN {printf "  with the limit: %.2fx the time\n", b / a}'
  exit 0
fi

if $gallery; then
  common="env PHOTOS='$folder' OUT='$work/out' $bin run pipelines/web-gallery.toml --quiet --progress never --force --jobs $jobs"
  cmd_of["threads"]="$common"
  cmd_of["--mode processes"]="$common --mode processes"
  echo
  echo "pipelines/web-gallery.toml on $(files "$folder" | wc -l) photos, $jobs jobs, median of $runs interleaved rounds:"
  interleaved "threads" "--mode processes"
  awk -v a="${wall_of[threads]}" -v b="${wall_of[--mode processes]}" \
    'BEGIN {printf "  processes mode speed over threads: %.2fx\n", a / b}'
  exit 0
fi

if $progressive; then
  big_jpegs=$work/progressive
  mkdir -p "$big_jpegs"
  python3 - "$folder" "$big_jpegs" <<'PY'
import glob, math, os, sys
from PIL import Image
src, dst = sys.argv[1], sys.argv[2]
for f in sorted(glob.glob(os.path.join(src, "*.jp*g"))):
    im = Image.open(f).convert("RGB")
    k = max(1, math.ceil(4200 / im.width))
    im = im.resize((im.width * k, im.height * k), Image.BICUBIC)
    im.save(os.path.join(dst, os.path.basename(f)), quality=90, progressive=True)
PY
  n=$(ls "$big_jpegs" | wc -l)
  cmd_of["conveyor"]="$bin run pipelines/thumbnails-fast.toml --quiet --progress never --jobs $jobs --force --set 'scan.root=\"$big_jpegs\"' --set 'save.dir=\"$work/out\"'"
  cmd_of["Pillow, Pool($jobs)"]="python3 bench/pillow_bench.py thumbs '$big_jpegs' '$work/out' $jobs"
  cmd_of["djpeg -scale 1/8, one at a time"]="sh -c 'for f in \"\$1\"/*; do djpeg -scale 1/8 -outfile /dev/null \"\$f\"; done' sh '$big_jpegs'"
  echo
  echo "256 px thumbnails of $n progressive JPEGs (at least 4200 px wide), $jobs jobs, median of $runs interleaved rounds:"
  interleaved "conveyor" "Pillow, Pool($jobs)" "djpeg -scale 1/8, one at a time"
  awk -v a="${wall_of[conveyor]}" -v b="${wall_of[Pillow, Pool($jobs)]}" -v c="${cpu_of[djpeg -scale 1/8, one at a time]}" -v j="$jobs" \
    'BEGIN {printf "  conveyor over Pillow: %.2fx; over djpeg'"'"'s CPU spread over %d cores: %.2fx\n", b / a, j, (c / j) / a}'
  exit 0
fi

if $limit; then
  jpegs=$work/jpegs
  mkdir -p "$jpegs"
  # Flattened under unique names: a generated set repeats names across
  # its folders.
  find "$folder" -type f \( -iname '*.jpg' -o -iname '*.jpeg' \) -printf '%P\n' | sort \
    | while IFS= read -r rel; do cp "$folder/$rel" "$jpegs/${rel//\//_}"; done
  n=$(ls "$jpegs" | wc -l)
  # djpeg's start-up is no decoding: the same number of runs on an 8x8
  # JPEG measures it, and it is taken off.
  python3 -c "from PIL import Image; Image.new('RGB', (8, 8)).save('$work/tiny.jpg')"
  cmd_of["conveyor"]="$bin run pipelines/thumbnails-fast.toml --quiet --progress never --jobs $jobs --force --set 'scan.root=\"$jpegs\"' --set 'save.dir=\"$work/out\"'"
  cmd_of["Pillow, Pool($jobs)"]="python3 bench/pillow_bench.py thumbs '$jpegs' '$work/out' $jobs"
  cmd_of["djpeg -scale 1/8, one at a time"]="sh -c 'for f in \"\$1\"/*; do djpeg -scale 1/8 -outfile /dev/null \"\$f\"; done' sh '$jpegs'"
  # The scale the `thumbnail` kind decodes each file at: the smallest N/8
  # whose output is at least twice the 256 px thumbnail (stages/thumbnail.rs;
  # Pillow's draft with its reducing_gap of 2 keeps the same margin, in
  # powers of two). djpeg at those scales is the decoding this task needs.
  python3 - "$jpegs" >"$work/scales" <<'PY'
import math, os, sys
from PIL import Image
folder = sys.argv[1]
for name in sorted(os.listdir(folder)):
    w, h = Image.open(os.path.join(folder, name)).size
    s = min(256 / w, 256 / h, 1.0)
    tw, th = (max(1, math.floor(v * s + 0.5)) for v in (w, h))
    n = next((n for n in range(1, 8)
              if -(-w * n // 8) >= 2 * tw and -(-h * n // 8) >= 2 * th), 8)
    print(n, os.path.join(folder, name))
PY
  cmd_of["djpeg at the thumbnail scales"]="sh -c 'while read -r n f; do djpeg -scale \$n/8 -outfile /dev/null \"\$f\"; done <\"\$1\"' sh '$work/scales'"
  cmd_of["djpeg start-up (8x8 JPEG)"]="sh -c 'for f in \"\$1\"/*; do djpeg -scale 1/8 -outfile /dev/null \"\$2\"; done' sh '$jpegs' '$work/tiny.jpg'"
  echo
  echo "JPEG thumbnails against the entropy-decoding limit, $n JPEGs, $jobs jobs, median of $runs interleaved rounds:"
  interleaved "conveyor" "Pillow, Pool($jobs)" "djpeg -scale 1/8, one at a time" \
    "djpeg at the thumbnail scales" "djpeg start-up (8x8 JPEG)"
  # No decoder here splits one file over cores: the set can't be done
  # faster than its longest file alone (djpeg -scale 1/8 on each file,
  # median of $runs: a lower bound, conveyor decodes some at 2/8 or more).
  longest=0
  for f in "$jpegs"/*; do
    ts=()
    for _ in $(seq "$runs"); do
      /usr/bin/time -f '%U %S' -o "$work/one.time" djpeg -scale 1/8 -outfile /dev/null "$f"
      ts+=("$(awk '{print $1 + $2}' "$work/one.time")")
    done
    t=$(printf '%s\n' "${ts[@]}" | median)
    longest=$(awk -v a="$longest" -v b="$t" 'BEGIN {print (b > a) ? b : a}')
  done
  awk -v c="${cpu_of[djpeg -scale 1/8, one at a time]}" -v s="${cpu_of[djpeg start-up (8x8 JPEG)]}" -v j="$jobs" \
    -v w="${wall_of[conveyor]}" -v p="${wall_of[Pillow, Pool($jobs)]}" -v l="$longest" \
    -v at="${cpu_of[djpeg at the thumbnail scales]}" -v hist="$(cut -d' ' -f1 "$work/scales" | sort | uniq -c | awk '{printf "%s%d/8: %d", (NR > 1 ? ", " : ""), $2, $1}')" 'BEGIN {
    d = c - s
    b = (l > d / j) ? l : d / j
    printf "  djpeg decoding CPU, less start-up %7.3fs\n", d
    printf "  limit (that over %d cores)         %7.3fs\n", j, d / j
    printf "  conveyor over the limit           %7.2fx\n", w / (d / j)
    printf "  longest file alone (djpeg)        %7.3fs\n", l
    printf "  bound: the larger of the two      %7.3fs; conveyor over it %.2fx\n", b, w / b
    printf "  conveyor speed over Pillow        %7.2fx\n", p / w
    printf "  Pillow over the bound             %7.2fx: the most any tool that entropy-decodes with libjpeg could be faster than Pillow here\n", p / b
    printf "  scales the thumbnail kind decodes at: %s\n", hist
    printf "  djpeg CPU at those, less start-up %7.3fs, over %d cores %.3fs; conveyor over it %.2fx\n", at - s, j, (at - s) / j, w / ((at - s) / j)
  }'
  exit 0
fi

if $encode; then
  src1600=$work/src1600
  echo "resizing $folder to 1600 px PNGs ..." >&2
  python3 bench/encode_bench.py prepare "$folder" "$src1600" 1600
  cat >"$work/enc.toml" <<TOML
[[stage]]
name = "scan"
kind = "scan"
root = "$src1600"
include = ["*.png"]

[[stage]]
name = "load"
kind = "decode"

[[stage]]
name = "enc"
kind = "encode"

[[stage]]
name = "save"
kind = "write"
dir = "$work/out"
TOML
  conv() { "$bin" run "$work/enc.toml" --quiet --progress never --jobs "$jobs" --force "$@"; }
  echo
  echo "encoders on $(ls "$src1600" | wc -l) photos at 1600 px (decode of the PNG included), $jobs jobs, median of $runs:"
  printf '  %-30s %5s %9s %9s %13s %10s\n' encoder files median images/s "total size" "mean PSNR"
  enc_measure "conveyor webp q80 (libwebp)" "$work/out" conv --set 'enc.format="webp"' --set enc.quality=80
  enc_measure "Pillow webp q80 (libwebp)" "$work/out" python3 bench/encode_bench.py encode webp 80 "$src1600" "$work/out" "$jobs"
  enc_measure "conveyor avif q70 s6 (ravif)" "$work/out" conv --set 'enc.format="avif"' --set enc.quality=70 --set enc.speed=6
  enc_measure "Pillow avif q70 s6 (libavif)" "$work/out" python3 bench/encode_bench.py encode avif 70 "$src1600" "$work/out" "$jobs"
  enc_measure "conveyor jpeg q85 (reference)" "$work/out" conv --set enc.quality=85
  exit 0
fi

if $colour; then
  src=$work/colour-src
  echo "making 200 files from $folder, in three colour versions ..." >&2
  python3 bench/make_set.py "$folder" "$src" 200
  python3 - "$src" "$work" <<'PY'
import os, sys
from PIL import Image, ImageCms
src, work = sys.argv[1], sys.argv[2]
adobe_path = "/usr/share/color/icc/ghostscript/a98.icc"
srgb = ImageCms.createProfile("sRGB")
srgb_bytes = ImageCms.ImageCmsProfile(srgb).tobytes()
adobe = ImageCms.getOpenProfile(adobe_path)
to_adobe = ImageCms.buildTransform(srgb, adobe, "RGB", "RGB")
for d in ("srgb", "tagged", "wide"):
    os.makedirs(os.path.join(work, d), exist_ok=True)
files = sorted(os.path.join(r, f) for r, _, fs in os.walk(src) for f in fs)
for i, path in enumerate(files):
    im = Image.open(path).convert("RGB")
    stem = "%04d.jpg" % i
    im.save(os.path.join(work, "srgb", stem), quality=90)
    im.save(os.path.join(work, "tagged", stem), quality=90, icc_profile=srgb_bytes)
    ImageCms.applyTransform(im, to_adobe).save(
        os.path.join(work, "wide", stem), quality=90, icc_profile=adobe.tobytes())
PY
  echo
  echo "colour management cost, thumbs task on 200 files, $jobs jobs, median of $runs interleaved rounds:"
  printf '  %-34s %6s %9s %9s %13s %9s\n' input images median images/s "peak RSS" "CPU time"
  add_config "sRGB, untagged" --jobs "$jobs" --set "scan.root=\"$work/srgb\""
  add_config "sRGB, tagged (conversion skipped)" --jobs "$jobs" --set "scan.root=\"$work/tagged\""
  add_config "Adobe RGB (converted)" --jobs "$jobs" --set "scan.root=\"$work/wide\""
  add_config "Adobe RGB, colour = keep" --jobs "$jobs" --set "scan.root=\"$work/wide\"" \
    --set 'thumb.colour="keep"'
  run_configs thumbs "$work/srgb"
  base="sRGB, untagged"
  for name in "sRGB, tagged (conversion skipped)" "Adobe RGB (converted)" "Adobe RGB, colour = keep"; do
    awk -v a="${cpu_of[$name]}" -v b="${cpu_of[$base]}" -v ta="${rate[$name]}" -v tb="${rate[$base]}" -v n="$name" \
      'BEGIN {printf "  %-34s %.3fx CPU time, %.3fx wall time of untagged sRGB\n", n, a / b, tb / ta}'
  done
  exit 0
fi

if $advise; then
  n=$(nproc)
  counts=(1)
  [ "$n" -ge 4 ] && counts+=($((n / 2)))
  [ "$n" -gt 1 ] && counts+=("$n")
  photos=$(files "$folder" | wc -l)
  # advise PIPELINE NAME: advise it on FOLDER, timed, applied to $work/NAME.
  advise_on() {
    local start end
    start=$(date +%s.%N)
    /usr/bin/time -f "%M" -o "$work/rss" "$bin" advise "$1" "$folder" --jobs "$jobs" \
      --apply "$work/$2" >"$work/advice.txt" 2>"$work/err" || { cat "$work/err" >&2; return 1; }
    end=$(date +%s.%N)
    printf '  advised in %.1fs, largest process %.0f MiB; its advice:\n' \
      "$(awk -v a="$start" -v b="$end" 'BEGIN {print b - a}')" "$(awk -v k="$(tail -n 1 "$work/rss")" 'BEGIN {print k / 1024}')"
    grep -E '^  advice:|^the (pipeline|sample)' "$work/advice.txt" | cut -c1-160 | sed 's/^/  /'
  }

  echo
  echo "conveyor advise on pipelines/thumbnails.toml, $photos photos, $jobs jobs:"
  advise_on pipelines/thumbnails.toml thumbnails-advised.toml
  echo
  echo "the advice against trying, median of $runs interleaved rounds:"
  printf '  %-34s %6s %9s %9s %13s %9s\n' run images median images/s "peak RSS" "CPU time"
  j=1
  while [ "$j" -lt "$n" ]; do
    add_config "--jobs $j" --jobs "$j"
    j=$((j * 2))
  done
  add_config "as shipped (auto, --jobs $jobs)" --jobs "$jobs"
  all=(--jobs "$jobs")
  for st in load thumb jpeg save; do all+=(--set "$st.workers=$n"); done
  add_config "every stage workers = $n" "${all[@]}"
  add_config "every stage processes" --jobs "$jobs" --mode processes
  combos=("")
  for st in load thumb jpeg; do
    next=()
    for c in "${combos[@]}"; do for k in "${counts[@]}"; do next+=("$c $st=$k"); done; done
    combos=("${next[@]}")
  done
  for combo in "${combos[@]}"; do
    args=(--jobs "$jobs" --mode save=inline)
    for kv in $combo; do args+=(--set "${kv%%=*}.workers=${kv#*=}"); done
    add_config "hand:$combo" "${args[@]}"
  done
  tried=("${cfg_names[@]}")
  add_config "advised" --jobs "$jobs"
  cfg_pipe[advised]=$work/thumbnails-advised.toml
  run_configs pipelines/thumbnails.toml "$folder"
  best=0 best_name=""
  for name in "${tried[@]}"; do
    if awk -v a="${rate[$name]}" -v b="$best" 'BEGIN {exit !(a > b)}'; then
      best=${rate[$name]} best_name=$name
    fi
  done
  awk -v a="${rate[advised]}" -v b="$best" -v name="$best_name" \
    'BEGIN {printf "  advised / best tried (%s)   %.2fx\n", name, a / b}'

  # A stage that waits: an `exec` sleeping 50 ms per photo, then a copy
  # of the photo.
  cat >"$work/sleep.toml" <<TOML
[[stage]]
name = "scan"
kind = "scan"
root = "$folder"

[[stage]]
name = "tool"
kind = "exec"
command = ["sleep", "0.05"]

[[stage]]
name = "save"
kind = "copy"
dir = "$work/sleep-out"
TOML
  echo
  echo "an exec stage sleeping 50 ms per photo, $photos photos, $jobs jobs:"
  advise_on "$work/sleep.toml" sleep-advised.toml
  printf '  %-34s %6s %9s %9s %13s %9s\n' run images median images/s "peak RSS" "CPU time"
  add_config "workers = \"auto\"" --jobs "$jobs"
  add_config "advised" --jobs "$jobs"
  cfg_pipe[advised]=$work/sleep-advised.toml
  run_configs "$work/sleep.toml" "$folder"
  awk -v a="${rate[advised]}" -v b="${rate[workers = \"auto\"]}" \
    'BEGIN {printf "  advised / auto   %.2fx\n", a / b}'

  # A stage that crashes its worker on one photo.
  first=$(basename "$(files "$folder" | head -n 1)")
  sed '/^name = "tool"$/,/^command/c\
name = "flaky"\
kind = "chaos"\
action = "segfault"\
match = "**/'"$first"'"' "$work/sleep.toml" >"$work/chaos.toml"
  echo
  echo "a chaos stage that crashes on $first:"
  "$bin" advise "$work/chaos.toml" "$folder" --jobs "$jobs" >"$work/advice.txt" 2>"$work/err" || { cat "$work/err" >&2; exit 1; }
  awk '/^stage `flaky`/ {on = 1} on && /^  advice:/ {print; exit}' "$work/advice.txt" | cut -c1-200 | sed 's/^/  /'
  exit 0
fi

if $scaling; then
  n=$(nproc)
  # Worker counts tried per stage by hand: 1, n/2 (from 4 cores up), n.
  counts=(1)
  [ "$n" -ge 4 ] && counts+=($((n / 2)))
  [ "$n" -gt 1 ] && counts+=("$n")
  set500=$work/set500
  echo "making 500 files from $folder ..." >&2
  python3 bench/make_set.py "$folder" "$set500" 500
  for task in thumbs large; do
    if [ "$task" = thumbs ]; then heavy=(thumb jpeg); else heavy=(large crisp jpeg); fi
    echo
    echo "conveyor scaling, $task task on 500 generated files, median of $runs interleaved rounds:"
    printf '  %-34s %6s %9s %9s %13s %9s\n' run images median images/s "peak RSS" "CPU time"
    j=1
    while [ "$j" -lt "$n" ]; do
      add_config "--jobs $j" --jobs "$j"
      j=$((j * 2))
    done
    add_config "auto (--jobs $n, the default)"
    all=()
    for st in "${heavy[@]}" save; do all+=(--set "$st.workers=$n"); done
    add_config "every stage workers = $n" "${all[@]}"
    # Every combination of hand-picked counts for the costly stages, `save`
    # inline; the best of them is the one to beat.
    combos=("")
    for st in "${heavy[@]}"; do
      next=()
      for c in "${combos[@]}"; do for k in "${counts[@]}"; do next+=("$c $st=$k"); done; done
      combos=("${next[@]}")
    done
    for combo in "${combos[@]}"; do
      args=(--mode save=inline)
      for kv in $combo; do args+=(--set "${kv%%=*}.workers=${kv#*=}"); done
      add_config "hand:$combo" "${args[@]}"
    done
    # And what `conveyor advise` makes of the task, applied.
    task_pipeline=pipelines/thumbnails-fast.toml
    [ "$task" = large ] && task_pipeline=pipelines/web-large.toml
    "$bin" advise "$task_pipeline" "$set500" --apply "$work/advised-$task.toml" \
      >/dev/null 2>"$work/err" || { cat "$work/err" >&2; exit 1; }
    add_config "advised (conveyor advise --apply)"
    cfg_pipe["advised (conveyor advise --apply)"]=$work/advised-$task.toml
    run_configs "$task" "$set500"
    best=0 best_name=""
    for combo in "${combos[@]}"; do
      if awk -v a="${rate[hand:$combo]}" -v b="$best" 'BEGIN {exit !(a > b)}'; then
        best=${rate[hand:$combo]} best_name="hand:$combo"
      fi
    done
    auto="auto (--jobs $n, the default)" every="every stage workers = $n"
    awk -v a="${rate[$auto]}" -v b="$best" -v e="${rate[$every]}" -v name="$best_name" \
      -v ca="${cpu_of[$auto]}" -v ce="${cpu_of[$every]}" -v pa="${peak_of[$auto]}" -v pe="${peak_of[$every]}" \
-v d="${rate[advised (conveyor advise --apply)]}" \
      'BEGIN {printf "  advised / best hand-tuned (%s)   %.2fx\n", name, d / b
              printf "  auto / best hand-tuned (%s)   %.2fx\n", name, a / b
              printf "  auto / every stage workers = CPU count   %.2fx speed, %.2fx CPU time, %.2fx peak RSS\n", a / e, ca / ce, pa / pe}'
  done
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

# Memory must not grow with the number of files: conveyor's peak RSS on 50
# and on 500 of them (the large task holds the most pixels).
set50=$work/set50
python3 bench/make_set.py "$folder" "$set50" 50
echo
echo "conveyor peak RSS by input size, large task, median of $runs:"
printf '  %-34s %6s %9s %9s %13s\n' input images median images/s "peak RSS"
for input in "$set50" "$set500"; do
  label="$(basename "$input") files"
  conveyor_run "$label" large "$input" --jobs "$jobs"
  peak_of[$label]=$last_peak
done
awk -v a="${peak_of[set500 files]}" -v b="${peak_of[set50 files]}" \
  'BEGIN {printf "  peak RSS 500 files / 50 files           %.2fx\n", a / b}'
