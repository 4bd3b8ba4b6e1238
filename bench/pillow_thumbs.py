"""Pillow's side of the thumbnails benchmark: Image.thumbnail() in a
multiprocessing.Pool, the way Python users batch this job.

    python3 bench/pillow_thumbs.py FOLDER OUT JOBS [SIZE] [QUALITY]
"""
import os
import sys
from multiprocessing import Pool

from PIL import Image

EXTS = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"}


def one(job):
    src, dst, size, quality = job
    with Image.open(src) as im:
        im.thumbnail((size, size))
        if im.mode not in ("RGB", "L"):
            im = im.convert("RGB")
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        im.save(dst, "JPEG", quality=quality)


def main():
    folder, out, jobs = sys.argv[1], sys.argv[2], int(sys.argv[3])
    size = int(sys.argv[4]) if len(sys.argv) > 4 else 256
    quality = int(sys.argv[5]) if len(sys.argv) > 5 else 85
    work = []
    for root, _, files in os.walk(folder):
        for name in sorted(files):
            if os.path.splitext(name)[1].lower() in EXTS:
                src = os.path.join(root, name)
                rel = os.path.relpath(src, folder)
                work.append((src, os.path.join(out, os.path.splitext(rel)[0] + ".jpg"), size, quality))
    with Pool(jobs) as pool:
        pool.map(one, work, chunksize=1)


if __name__ == "__main__":
    main()
