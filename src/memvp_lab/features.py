"""Extract visual features from a folder of images, or consolidate per-image feature files.

    python -m memvp_lab.features extract --vision clip_rn101 --images /data/coco/val2014 \\
        --out /data/datasets/COCO/clip_features/data_clip_RN101_att
    python -m memvp_lab.features extract --vision clip_vit_l14 --images /data/scienceqa/images \\
        --pattern "*/*/image.png" --id-from parent --out /data/scienceqa/features/clip_vit_l14.h5
    python -m memvp_lab.features extract --vision clip_vit_b32_frames --videos /data/tvqa/frames_hq \
        --pattern "*/*" --out /data/video/tvqa/clip_vit_b32_frames.h5
    python -m memvp_lab.features consolidate --src <dir of <img_id>.h5> --out all.h5

``--vision`` names a config of ``conf/vision`` (its ``encoder`` node builds the timm model; hub
weights where available, ``--weights random`` for a dry run). Output: a ``.h5`` path gives one
consolidated file, anything else a directory of ``<img_id>.h5`` files (the layout CLIP features
are shipped in). Both are resumable: images already extracted are skipped. ``--videos`` reads one
folder of frames per video (``--pattern`` matches the folders) and stores ``vision.num_tokens``
evenly spaced frames of each, one token per frame.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from hydra.utils import instantiate

from memvp_lab.config.compose import compose_config
from memvp_lab.data.extraction import consolidate, extract_features
from memvp_lab.data.images import IMAGE_SUFFIXES, find_images, find_videos


def vision_config(name: str, weights: str | None, overrides: list[str]):
    extra = [f"vision.encoder.weights={weights}"] if weights else []
    return compose_config([f"vision={name}", "vision.adapters=null", *extra, *overrides]).vision


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m memvp_lab.features", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("extract", help="run a vision encoder over a folder of images")
    ex.add_argument("--vision", required=True, help="config name in conf/vision (clip_rn101, clip_vit_l14, ...)")
    source = ex.add_mutually_exclusive_group(required=True)
    source.add_argument("--images", type=Path, help="folder searched with --pattern for image files")
    source.add_argument("--videos", type=Path, help="folder searched with --pattern for frame folders")
    ex.add_argument("--out", required=True, type=Path, help="a .h5 file or a directory of <img_id>.h5")
    ex.add_argument("--pattern", default=None, help="glob under --images (default **/*) or --videos (default *)")
    ex.add_argument("--id-from", choices=("stem", "parent"), default="stem", help="image id: file stem or folder name")
    ex.add_argument("--batch-size", type=int, default=32)
    ex.add_argument("--weights", choices=("timm", "random", "efficientnet_lite0_wheel"), default=None)
    ex.add_argument("overrides", nargs="*", help="extra Hydra overrides, e.g. vision.image_size=336")
    co = sub.add_parser("consolidate", help="copy per-image <img_id>.h5 files into one .h5 file")
    co.add_argument("--src", required=True, type=Path)
    co.add_argument("--out", required=True, type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.command == "consolidate":
        if not args.src.is_dir():
            parser.error(f"--src {args.src} is not a directory")
        print(consolidate(args.src, args.out))
        return 0
    folder = args.images or args.videos
    kind = "images" if args.images else "videos"
    if not folder.is_dir():
        parser.error(f"--{kind} {folder} is not a directory")
    vision = vision_config(args.vision, args.weights, args.overrides)
    if args.images:
        pattern = args.pattern or "**/*"
        items = find_images(folder, pattern, args.id_from)
        frames = None
    else:
        pattern = args.pattern or "*"
        items, frames = find_videos(folder, pattern), int(vision.num_tokens)
    if not items:
        parser.error(f"no {kind} ({'/'.join(IMAGE_SUFFIXES)} files) match {pattern!r} under {folder}")
    encoder = lambda: instantiate(vision.encoder)  # noqa: E731 - built only if something is missing
    out = extract_features(encoder, items, args.out, batch_size=args.batch_size, frames=frames)
    print(f"{len(items)} {kind} -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
