"""osnet-crops: a camera's video -> Market-1501-layout pseudo-identity crops (no labels needed).

    osnet-crops vtest.avi --out crops/vtest                      # static camera: background subtraction
    osnet-crops MOT17-04/img1 --out crops/m17 --boxes det.txt    # a detector's boxes instead

The folder works as it is for `osnet-export --int8 --calib DIR --holdout DIR` and
`osnet-train --data market1501:DIR`.
"""
from __future__ import annotations

import argparse
import sys

from osnet_edge.cli_convention import add_version, report
from osnet_edge.errors import OsnetEdgeError, UsageError

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
    p.add_argument("--seed", type=int, default=0, help="seed of the train/test split of tracklets (default 0)")
    p.add_argument("--write-boxes", metavar="DET.TXT", default=None,
                   help="also write every box found as a MOT det file (frame, -1, x, y, w, h, score: top-left "
                        "corner and size), detections for a tracker; osnet_edge.calibration.read_mot_boxes reads it "
                        "back as x1, y1, x2, y2 (what embed_frame takes)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return add_version(p)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from osnet_edge.calibration.crops_dataset import build_crops_dataset

    try:
        if args.min_track < 2 or args.per_track < 2:
            raise UsageError(f"--min-track and --per-track must be >= 2 (a test tracklet gives a query and a gallery "
                             f"crop), got {args.min_track} and {args.per_track}")
        if not 0 < args.test_frac < 1:
            raise UsageError(f"--test-frac must be in (0, 1), got {args.test_frac}")
        summary = build_crops_dataset(args.video, args.out, boxes=args.boxes, min_track=args.min_track,
                                      per_track=args.per_track, test_frac=args.test_frac, seed=args.seed,
                                      write_boxes=args.write_boxes, progress=not args.no_progress)
    except OsnetEdgeError as exc:
        return report(PROG, exc)
    print(summary.table())
    print(wrote(summary.out, args.write_boxes))
    return 0


def wrote(out, write_boxes=None) -> str:
    """What osnet-crops wrote besides the crops, one line each."""
    from pathlib import Path

    out = Path(out)
    lines = [f"wrote {out / 'preview.jpg'}: up to 24 identities, one row of crops each (t: test)",
             f"wrote {out / 'tracklets.txt'}: the kept tracklets, MOT format (frame, pid, x, y, w, h)",
             f"wrote {out / 'osnet_crops.json'}: this summary and each tracklet's frames and split"]
    if write_boxes:
        n = sum(1 for line in Path(write_boxes).read_text().splitlines() if line.strip())
        lines.append(f"wrote {write_boxes}: {n} boxes, MOT det format (frame, -1, x, y, w, h, score: top-left corner "
                     f"and size); osnet_edge.calibration.read_mot_boxes() reads it as x1, y1, x2, y2")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
