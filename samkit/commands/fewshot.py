"""``samkit fewshot``: segment a class in query images from K annotated support examples (FSSAM)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from samkit.errors import InputError

if TYPE_CHECKING:
    from samkit.results import ImageResult

FORMATS = ("png", "coco-rle", "overlay")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
DEFAULT_BACKBONE = "sam2-hiera-small"
MASK_FOREGROUND_255 = 255
"""A 0 / 255 support mask PNG: 255 is the object (a 0 / 1 / 255 mask keeps 255 as ignore)."""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("fewshot", help="segment a class from K examples (FSSAM few-shot)")
    parser.add_argument("--support", action="append", required=True, metavar="IMG:MASK",
                        help="a support image and its mask PNG (object 1 or 255 on 0; with 0/1 values 255 = "
                             "ignore); repeat for K shots")
    parser.add_argument("--query", required=True, help="a query image or a folder of images")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--format", choices=FORMATS, default="png",
                        help="png (binary 0/255 masks), coco-rle (one JSON per query) or overlay (tinted RGB)")
    parser.add_argument("--backbone", default=DEFAULT_BACKBONE,
                        help=f"SAM 2.0 backbone of the checkpoint (default {DEFAULT_BACKBONE})")
    parser.add_argument("--checkpoint", default=None, help="FSSAM checkpoint (e.g. the official best_1shot.pth)")
    parser.add_argument("--official-compat", action="store_true",
                        help="reproduce the official 5-shot calibration slice (use with released 5-shot weights)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="queries per forward pass (default: 1 on the CPU, 4 on CUDA)")
    parser.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, ...")
    parser.set_defaults(run=run)


def parse_support(spec: str) -> tuple[Path, Path]:
    """``"image.jpg:mask.png"`` -> paths (the last ':' splits, so Windows drive letters survive)."""
    image, sep, mask = spec.rpartition(":")
    if not sep or not image or not mask:
        raise InputError(f"--support {spec!r}: expected IMG:MASK, e.g. --support cat.jpg:cat_mask.png")
    return Path(image), Path(mask)


def read_support_mask(path: Path) -> np.ndarray:
    """A support mask PNG as uint8 with 1 object, 0 background, 255 ignore (0/255 files: 255 is the object)."""
    from samkit.io.masks import read_palette_png

    if not path.is_file():
        raise InputError(f"support mask {path}: no such file")
    labels = read_palette_png(path)
    values = set(np.unique(labels).tolist())
    if values <= {0, MASK_FOREGROUND_255}:
        return (labels == MASK_FOREGROUND_255).astype(np.uint8)
    return labels


def query_images(query: Path) -> list[Path]:
    """The query file, or the images of a folder in name order."""
    if query.is_file():
        return [query]
    if query.is_dir():
        files = sorted(path for path in query.iterdir() if path.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise InputError(f"--query {query}: the folder holds no images ({', '.join(IMAGE_SUFFIXES)})")
        return files
    raise InputError(f"--query {query}: no such file or folder")


def write_result(result: ImageResult, image: np.ndarray, out: Path, stem: str, fmt: str) -> Path:
    """Write one query's mask atomically in ``fmt``."""
    from samkit.io.atomic import atomic_save_image
    from samkit.io.masks import write_binary_png

    if fmt == "png":
        return write_binary_png(out / f"{stem}.png", result.masks[0])
    if fmt == "coco-rle":
        return result.save(out / f"{stem}.json")
    from PIL import Image

    return atomic_save_image(out / f"{stem}.png", Image.fromarray(result.overlay(image)))


def run(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    import samkit
    from samkit.io.images import read_image_file

    if args.batch_size is not None and args.batch_size < 1:
        raise InputError(f"--batch-size must be >= 1, got {args.batch_size}")
    pairs = [parse_support(spec) for spec in args.support]
    support = samkit.SupportSet([str(image) for image, _ in pairs], [read_support_mask(mask) for _, mask in pairs])
    queries = query_images(Path(args.query))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    seg = samkit.load("fssam", backbone=args.backbone, checkpoint=args.checkpoint, device=args.device,
                      official_compat=args.official_compat)
    with seg:
        encoded = seg.support(support)
        batch_size = args.batch_size or seg.default_batch_size
        bar = tqdm(total=len(queries), desc="fewshot", unit="image")
        for start in range(0, len(queries), batch_size):
            chunk = queries[start:start + batch_size]
            images = [read_image_file(path) for path in chunk]
            for path, image, result in zip(chunk, images, seg.predict_many(images, encoded, batch_size=len(chunk))):
                write_result(result, image, out, path.stem, args.format)
                bar.update(1)
        bar.close()
    print(f"wrote {len(queries)} {args.format} result(s) to {out}")
    return 0
