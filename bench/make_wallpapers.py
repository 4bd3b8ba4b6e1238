"""Make a set of 38 wallpaper-sized images from a folder of photos, the kind
of input that holds the most pixels per file: 22 JPEGs (q90) and 16 PNGs, at
1920x1080, 2560x1440, 3840x2160 and 5120x2880 in turn, deterministic.

    python3 bench/make_wallpapers.py FOLDER OUT
"""
import os
import sys

from PIL import Image

folder, out = sys.argv[1], sys.argv[2]
sizes = [(1920, 1080), (2560, 1440), (3840, 2160), (5120, 2880)]
sources = sorted(
    os.path.join(folder, f)
    for f in os.listdir(folder)
    if os.path.splitext(f)[1].lower() in (".jpg", ".jpeg", ".png")
)
os.makedirs(out, exist_ok=True)
for i in range(38):
    im = Image.open(sources[i % len(sources)]).convert("RGB")
    w, h = sizes[i % len(sizes)]
    # Fill the frame: scale to cover, then crop the middle.
    scale = max(w / im.width, h / im.height)
    im = im.resize((round(im.width * scale), round(im.height * scale)), Image.BICUBIC)
    x, y = (im.width - w) // 2, (im.height - h) // 2
    im = im.crop((x, y, x + w, y + h))
    # 16 of the 38 are PNGs (i % 5 is 1 or 3).
    if i % 5 in (1, 3):
        im.save(os.path.join(out, "wall%02d.png" % i), compress_level=6)
    else:
        im.save(os.path.join(out, "wall%02d.jpg" % i), quality=90)
