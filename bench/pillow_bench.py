"""Pillow's side of the benchmarks, in a multiprocessing.Pool: the way Python
users batch image jobs.

    python3 bench/pillow_bench.py TASK FOLDER OUT JOBS

TASK is `thumbs` (Image.thumbnail() to 256 px, JPEG q85) or `large` (1600 px
wide, unsharp mask, JPEG q85).
"""
import os
import sys
from multiprocessing import Pool

from PIL import Image, ImageFilter

EXTS = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"}


def thumbs(src, dst):
    with Image.open(src) as im:
        im.thumbnail((256, 256))
        if im.mode not in ("RGB", "L"):
            im = im.convert("RGB")
        im.save(dst, "JPEG", quality=85)


def large(src, dst):
    with Image.open(src) as im:
        # Like conveyor's `thumbnail` with width = 1600: never upscale, and
        # let Pillow's draft() shrink JPEGs on load where it can.
        im.thumbnail((1600, 100000))
        if im.mode not in ("RGB", "L"):
            im = im.convert("RGB")
        im = im.filter(ImageFilter.UnsharpMask(radius=1, percent=80, threshold=0))
        im.save(dst, "JPEG", quality=85)


def one(job):
    task, src, dst = job
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    (thumbs if task == "thumbs" else large)(src, dst)


def main():
    task, folder, out, jobs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    work = []
    for root, _, files in os.walk(folder):
        for name in sorted(files):
            if os.path.splitext(name)[1].lower() in EXTS:
                src = os.path.join(root, name)
                rel = os.path.relpath(src, folder)
                work.append((task, src, os.path.join(out, os.path.splitext(rel)[0] + ".jpg")))
    with Pool(jobs) as pool:
        pool.map(one, work, chunksize=1)


if __name__ == "__main__":
    main()
