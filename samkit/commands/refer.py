"""``samkit refer``: segment what a text expression refers to in one image (ReferSAM)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from samkit.commands.common import add_load_arguments, int_at_least, quiet_upstream_warnings
from samkit.errors import InputError

REFER_FORMATS = ("png", "coco-rle", "overlay")
DEFAULT_BACKBONE = "sam-vit-b"
DEFAULT_TEXT_ENCODER = "bert-base-uncased"
DEFAULT_IMAGE_SIZE = 448


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("refer", help="segment what a text expression refers to in an image (ReferSAM)")
    parser.add_argument("image", help="an image file")
    parser.add_argument("text", help='a referring expression, e.g. "the man on the left"')
    parser.add_argument("--text", dest="more_texts", action="append", default=[], metavar="TEXT",
                        help="another expression (repeat the option); one mask per expression")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--format", choices=REFER_FORMATS, default="png",
                        help="png: one binary 0/255 mask per expression ({obj:03d}.png); coco-rle: masks.json; "
                             "overlay: overlay.png (default png)")
    add_load_arguments(parser, backbone=DEFAULT_BACKBONE, backbone_help="SAM ViT: sam-vit-b, sam-vit-l, sam-vit-h")
    parser.add_argument("--backbone-checkpoint", default=None,
                        help="SAM weights for an untrained start point (when no --checkpoint is given)")
    parser.add_argument("--text-encoder", default=DEFAULT_TEXT_ENCODER,
                        help=f"hub id or local directory of the text model, or 'minilm' (default {DEFAULT_TEXT_ENCODER})")
    parser.add_argument("--image-size", type=int_at_least(32), default=DEFAULT_IMAGE_SIZE,
                        help=f"square network input size, a multiple of 32 (default {DEFAULT_IMAGE_SIZE})")
    parser.add_argument("--official-compat", action="store_true",
                        help="reproduce the official code's behaviour (see the README deviation table)")
    parser.set_defaults(run=run)


register = add_parser
"""Alias: ``register(subparsers)`` adds the ``refer`` sub-command."""


def run(args: argparse.Namespace) -> int:
    import samkit
    from samkit.checkpoints import UntrainedWeightsWarning
    from samkit.io.atomic import atomic_save_image, atomic_write_text
    from samkit.io.images import load_image
    from samkit.io.masks import write_binary_png

    texts = [args.text, *args.more_texts]
    if not Path(args.image).is_file():
        raise InputError(f"image {args.image} does not exist")
    rgb = load_image(args.image)
    with quiet_upstream_warnings(*([UntrainedWeightsWarning] if args.checkpoint is None else [])):
        segmenter = samkit.load(
            "refersam", backbone=args.backbone, checkpoint=args.checkpoint,
            backbone_checkpoint=args.backbone_checkpoint, device=args.device, text_encoder=args.text_encoder,
            image_size=args.image_size, official_compat=args.official_compat,
        )  # fmt: skip
    if args.checkpoint is None:
        print("warning: no --checkpoint given, so the ReferSAM weights are untrained and the masks meaningless")
    with segmenter:
        result = segmenter.predict(rgb, prompt=[samkit.Text(text) for text in texts])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.format == "png":
        for obj_id, mask in zip(result.obj_ids, result.masks):
            write_binary_png(out / f"{obj_id:03d}.png", mask)
        atomic_write_text(out / "expressions.json", json.dumps({f"{i:03d}": t for i, t in zip(result.obj_ids, texts)}))
    elif args.format == "coco-rle":
        document = {
            "height": result.height,
            "width": result.width,
            "annotations": [
                {"obj_id": obj_id, "text": text, "score": float(score), "segmentation": rle}
                for obj_id, text, score, rle in zip(result.obj_ids, texts, result.scores, result.to_rle())
            ],
        }
        atomic_write_text(out / "masks.json", json.dumps(document))
    else:
        atomic_save_image(out / "overlay.png", result.overlay(rgb))
    print(f"{len(texts)} expression(s) on {args.image}: {args.format} output in {out}")
    return 0
