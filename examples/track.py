"""A tracker loop end to end: MOT detections on a video -> Embedder (appearance) + IoU -> MOT tracks + PNG.

    python examples/track.py VIDEO DET.txt MODEL [--out tracks.txt] [--png tracks.png] [--draw 100,300,500,700]
                             [--gallery URI --camera NAME]     # finished tracks into an osnet-gallery

VIDEO: a video file or a folder of frames; DET.txt: MOT-format detections (frame, id, x, y, w, h, score, ...;
ids are ignored), e.g. from a detector or from `osnet-crops VIDEO --out DIR --write-boxes DET.txt`
(background subtraction); MODEL: any artifact the Embedder opens (.onnx, .xml, .engine, .pth).
Prints frames per second with the embedding included (decoding the video excluded, reported apart).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np


def track_video(video, detections, model, out, png=None, draw=(), threads=None, progress=True, gallery=None,
                camera=None) -> dict:
    import cv2

    from osnet_edge import Embedder
    from osnet_edge.atomic import atomic_path
    from osnet_edge.calibration.crops_dataset import write_mot
    from osnet_edge.calibration.errors import CalibrationError, VideoEnded
    from osnet_edge.calibration.video import frame_reader, read_mot_boxes
    from osnet_edge.tracking import Tracker, draw_tracks

    table = read_mot_boxes(detections)
    last = int(table[:, 0].max())
    by_frame = {}
    for row in table:
        by_frame.setdefault(int(row[0]), []).append(row[2:6])
    emb, tracker = Embedder(model, threads=threads), Tracker()
    feed = None
    if gallery:  # finished tracks go into the gallery as the video runs (osnet_edge.gallery, the [gallery] extra)
        from osnet_edge.gallery import Gallery
        from osnet_edge.gallery.live import LiveTracks

        cap = cv2.VideoCapture(str(video))
        fps = cap.get(cv2.CAP_PROP_FPS) or None if Path(video).is_file() else None
        cap.release()
        feed = LiveTracks(Gallery(gallery, emb), camera or Path(video).stem, fps, max_age=tracker.max_age)
    read, close = frame_reader(video)      # the MOT frame reading osnet-crops and --calib mot: use
    rows, drawn, t_decode, t_track = [], {}, 0.0, 0.0
    frames = range(1, last + 1)
    if progress:
        from tqdm import tqdm

        frames = tqdm(frames, desc=f"tracking {Path(video).name}", unit="frame", file=sys.stderr, leave=False)
    try:
        for no in frames:
            t0 = time.perf_counter()
            try:
                frame = read(no)
            except VideoEnded:              # one line: which file, which frame; no output written
                raise CalibrationError(f"{detections} has detections up to frame {last}, but {video} ends at "
                                       f"frame {no - 1}") from None
            t1 = time.perf_counter()
            boxes = np.asarray(by_frame.get(no, np.zeros((0, 4))), np.float64).reshape(-1, 4)
            feats = emb.embed_frame(frame, boxes)  # no boxes: (0, D) features
            ids = tracker.update(boxes, feats)
            if feed is not None:
                feed.update(no, frame, boxes, ids, feats)
            t_track += time.perf_counter() - t1
            t_decode += t1 - t0
            rows += [(no, i, *b) for i, b in zip(ids, boxes)]
            if no in draw:
                drawn[no] = draw_tracks(frame, boxes, ids, f"frame {no}")
        added = feed.close() if feed is not None else None
    finally:
        close()
        emb.close()
    write_mot(out, rows)
    if png and drawn:
        tiles = [cv2.resize(drawn[k], None, fx=0.5, fy=0.5) for k in sorted(drawn)]
        tiles += [np.zeros_like(tiles[0])] * (len(tiles) % 2)
        grid = np.vstack([np.hstack(tiles[i:i + 2]) for i in range(0, len(tiles), 2)])
        with atomic_path(png) as tmp:
            cv2.imwrite(str(tmp), grid)
    return {"frames": last, "detections": len(rows), "tracks": len({r[1] for r in rows}),
            "fps_embed_and_associate": last / t_track, "fps_with_decoding": last / (t_track + t_decode),
            "model": str(model), "gallery": added}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("video")
    p.add_argument("detections")
    p.add_argument("model")
    p.add_argument("--out", default="tracks.txt", help="MOT-format tracks (default tracks.txt)")
    p.add_argument("--png", default=None, help="annotated frames (2 per row)")
    p.add_argument("--draw", default="100,300,500,700", help="frame numbers to draw into --png")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--gallery", metavar="URI", default=None,
                   help="also add each finished track to this gallery (osnet-gallery; pip install 'osnet-edge[gallery]')")
    p.add_argument("--camera", metavar="NAME", default=None, help="camera name in the gallery (default: the video's stem)")
    args = p.parse_args(argv)
    from osnet_edge.errors import OsnetEdgeError

    try:
        r = track_video(args.video, args.detections, args.model, args.out, args.png,
                        {int(x) for x in args.draw.split(",") if x}, args.threads, not args.no_progress,
                        args.gallery, args.camera)
    except OsnetEdgeError as exc:
        print(f"track.py: error: {exc}", file=sys.stderr)
        return 2
    print(f"{r['frames']} frames, {r['detections']} boxes, {r['tracks']} track ids -> {args.out}"
          f"{' + ' + args.png if args.png else ''}")
    print(f"{r['fps_embed_and_associate']:.1f} frames/s embedding + association "
          f"({r['fps_with_decoding']:.1f} with video decoding) for {Path(args.model).name}")
    if r["gallery"] is not None:
        print(f"gallery {args.gallery}: +{r['gallery']['entries']} entries ({r['gallery']['tracks']} tracks)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
