"""Encoder side of bench/compare.sh --encode: Pillow's own WebP and AVIF
encoders, and the tools to compare outputs with conveyor's.

    python3 bench/encode_bench.py prepare FOLDER SRC WIDTH
        photos in FOLDER, resized to WIDTH px wide, as PNG in SRC (lossless
        inputs that both tools decode alike)
    python3 bench/encode_bench.py encode FORMAT QUALITY SRC OUT JOBS
        every PNG in SRC to FORMAT (webp: lossy, method 4, libwebp's default
        like conveyor's; avif: Pillow's default speed 6) in a Pool of JOBS
    python3 bench/encode_bench.py score SRC OUT
        "BYTES PSNR": total size of the files in OUT, mean PSNR (dB, RGB)
        against the PNG of the same stem in SRC
"""
import math
import os
import sys
from multiprocessing import Pool

from PIL import Image, ImageChops, ImageStat

EXTS = {".jpg", ".jpeg", ".png"}


def prepare(folder, src, width):
    os.makedirs(src, exist_ok=True)
    for name in sorted(os.listdir(folder)):
        stem, ext = os.path.splitext(name)
        if ext.lower() not in EXTS:
            continue
        with Image.open(os.path.join(folder, name)) as im:
            im = im.convert("RGB")
            im.thumbnail((width, 100000))
            im.save(os.path.join(src, stem + ".png"), compress_level=1)


def one(job):
    fmt, quality, src, dst = job
    with Image.open(src) as im:
        if fmt == "webp":
            im.save(dst, "WEBP", quality=quality, method=4)
        else:
            im.save(dst, "AVIF", quality=quality)


def encode(fmt, quality, src, out, jobs):
    os.makedirs(out, exist_ok=True)
    work = [
        (fmt, quality, os.path.join(src, n), os.path.join(out, os.path.splitext(n)[0] + "." + fmt))
        for n in sorted(os.listdir(src))
        if n.endswith(".png")
    ]
    with Pool(jobs) as pool:
        pool.map(one, work, chunksize=1)


def score(src, out):
    total, psnrs = 0, []
    for name in sorted(n for n in os.listdir(out) if not n.startswith(".")):
        path = os.path.join(out, name)
        total += os.path.getsize(path)
        ref = os.path.join(src, os.path.splitext(name)[0] + ".png")
        with Image.open(ref) as a, Image.open(path) as b:
            rms = ImageStat.Stat(ImageChops.difference(a.convert("RGB"), b.convert("RGB"))).rms
            mse = sum(r * r for r in rms) / 3
            psnrs.append(99.0 if mse == 0 else 10 * math.log10(255 * 255 / mse))
    print(total, round(sum(psnrs) / max(len(psnrs), 1), 2))


def main():
    cmd = sys.argv[1]
    if cmd == "prepare":
        prepare(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    elif cmd == "encode":
        encode(sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5], int(sys.argv[6]))
    else:
        score(sys.argv[2], sys.argv[3])


if __name__ == "__main__":
    main()
