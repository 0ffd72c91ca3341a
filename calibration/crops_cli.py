"""osnet-crops: a camera's video -> Market-1501-layout pseudo-identity crops (no labels needed).

    osnet-crops vtest.avi --out crops/vtest                      # static camera: background subtraction
    osnet-crops MOT17-04/img1 --out crops/m17 --boxes det.txt    # a detector's boxes instead

The folder works as it is for `osnet-export --int8 --calib DIR --holdout DIR` and
`osnet-train --data market1501:DIR`.
"""
from __future__ import annotations

import argparse
import sys

from osnet_edge.errors import OsnetEdgeError

PROG = "osnet-crops"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Turn a video (or a folder of frames) into a Market-1501-layout dataset of person crops: "
                    "IoU tracklets of detector boxes (--boxes) or of background-subtraction blobs (static "
                    "camera), each tracklet one identity, split between train and test by tracklet.")
    p.add_argument("video", help="video file or folder of frame images")
    p.add_argument("--out", required=True, metavar="DIR", help="new (or empty) output folder")
    p.add_argument("--boxes", metavar="DET.TXT", default=None,
                   help="MOT-format boxes (frame, id, x, y, w, h, ...); ids > 0 on every row are used as tracks")
    p.add_argument("--min-track", type=int, default=10, metavar="N",
                   help="shortest tracklet (frames) kept as an identity (default 10)")
    p.add_argument("--per-track", type=int, default=16, metavar="K",
                   help="crops per tracklet, spread evenly over it (default 16)")
    p.add_argument("--test-frac", type=float, default=0.5, metavar="F",
                   help="fraction of tracklets for query/gallery (default 0.5)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--write-boxes", metavar="DET.TXT", default=None,
                   help="also write every box found as a MOT det file (detections for a tracker)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from osnet_edge.calibration.crops_dataset import build_crops_dataset

    try:
        summary = build_crops_dataset(args.video, args.out, boxes=args.boxes, min_track=args.min_track,
                                      per_track=args.per_track, test_frac=args.test_frac, seed=args.seed,
                                      write_boxes=args.write_boxes, progress=not args.no_progress)
    except OsnetEdgeError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    print(summary.table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
