#!/usr/bin/env python
"""Pack a class-folder image set into RecordIO (.rec + .idx) for DATA.kind rec.

    python tools/make_rec.py IMAGE_FOLDER OUT.rec [--resize 480] [--quality 95]

IMAGE_FOLDER holds one sub-folder per class (sorted names give labels 0, 1, ...).
Images are optionally resized (shorter side) and stored as JPEG.
"""
import os
import sys

import cv2
import mxnet as mx

from octconv.cli import ArgumentParser, command, output_path
from octconv.files import write_atomically

EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")


def list_images(root):
    """(path, label) for every image, classes in sorted folder order."""
    classes = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    return [(os.path.join(root, c, f), label) for label, c in enumerate(classes)
            for f in sorted(os.listdir(os.path.join(root, c))) if f.lower().endswith(EXTENSIONS)]


def _record(path, label, index, resize, quality):
    """One image as a JPEG record labelled ``label``."""
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"cannot decode {path}")
    if resize:
        h, w = image.shape[:2]
        scale = resize / min(h, w)
        image = cv2.resize(image, (round(w * scale), round(h * scale)),
                           interpolation=cv2.INTER_AREA)
    header = mx.recordio.IRHeader(0, float(label), index, 0)
    return mx.recordio.pack_img(header, image, quality=quality, img_fmt=".jpg")


def pack(root, rec_path, resize=0, quality=95):
    """Write ``rec_path`` and its ``.idx``; return the number of images."""
    if not os.path.isdir(root):
        raise ValueError(f"image folder not found: {root}")
    images = list_images(root)
    if not images:
        raise ValueError(f"no images in {root} (expected one sub-folder per class)")
    idx_path = os.path.splitext(rec_path)[0] + ".idx"

    def write(tmp_rec, tmp_idx):
        writer = mx.recordio.MXIndexedRecordIO(tmp_idx, tmp_rec, "w")
        try:
            for i, (path, label) in enumerate(images):
                writer.write_idx(i, _record(path, label, i, resize, quality))
        finally:
            writer.close()

    # the index is renamed into place first, the records last
    write_atomically(rec_path, lambda tmp_rec: write_atomically(
        idx_path, lambda tmp_idx: write(tmp_rec, tmp_idx)))
    return len(images)


@command
def main(argv=None):
    parser = ArgumentParser(__doc__)
    parser.add_argument("folder")
    parser.add_argument("rec")
    parser.add_argument("--resize", type=int, default=0, help="shorter side, 0 keeps the size")
    parser.add_argument("--quality", type=int, default=95, help="JPEG quality")
    args = parser.parse_args(argv)
    if args.resize < 0:
        parser.error(f"--resize must be 0 (keep the size) or positive, got {args.resize}")
    if not 1 <= args.quality <= 100:
        parser.error(f"--quality is a JPEG quality from 1 to 100, got {args.quality}")
    output_path(args.rec, "the .rec path")
    count = pack(args.folder, args.rec, args.resize, args.quality)
    print(f"{count} images -> {args.rec}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
