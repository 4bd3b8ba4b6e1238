"""Make a larger benchmark input set from a folder of photos: COUNT files
made by cropping (random boxes of 40-100% of each side) and re-encoding the
originals as JPEG (quality 80-95, some progressive) or PNG, deterministic.

    python3 bench/make_set.py FOLDER OUT COUNT
"""
import os
import random
import sys

from PIL import Image

folder, out, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
rng = random.Random(20261124)
sources = sorted(
    os.path.join(folder, f)
    for f in os.listdir(folder)
    if os.path.splitext(f)[1].lower() in (".jpg", ".jpeg", ".png")
)
os.makedirs(out, exist_ok=True)
images = [Image.open(s).convert("RGB") for s in sources]
for i in range(count):
    im = images[i % len(images)]
    w, h = im.size
    cw, ch = int(w * rng.uniform(0.4, 1.0)), int(h * rng.uniform(0.4, 1.0))
    x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
    crop = im.crop((x, y, x + cw, y + ch))
    sub = os.path.join(out, "%02d" % (i % 20))
    os.makedirs(sub, exist_ok=True)
    if i % 10 == 9:
        crop.save(os.path.join(sub, "img%04d.png" % i), "PNG", compress_level=3)
    else:
        crop.save(
            os.path.join(sub, "img%04d.jpg" % i),
            "JPEG",
            quality=rng.randint(80, 95),
            progressive=(i % 7 == 0),
        )
