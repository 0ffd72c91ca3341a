"""osnet-gallery: a cross-camera gallery of person tracks (add, search, stats, index).

    osnet-gallery add --db site.gallery --model m.onnx --camera cam2 crops/cam2/          # Market-layout crops
    osnet-gallery add --db site.gallery --model m.onnx --camera gate video.avi --tracks tracks.txt
    osnet-gallery search --db site.gallery --model m.onnx crops/cam1/ --top 10 --json hits.json --png hits/
    osnet-gallery search --db site.gallery --model m.onnx gate:17 --after 3600 --before 7200
    osnet-gallery stats --db site.gallery
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from osnet_edge.cli_convention import add_version, report
from osnet_edge.errors import OsnetEdgeError

PROG = "osnet-gallery"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Store person tracks of many cameras and find the same "
                                "person on the other cameras. --db: a folder (embedded database, created on first "
                                "add) or s3:// gs:// az:// db:// (the same engine on shared storage or its server).")
    sub = p.add_subparsers(dest="cmd", required=True)

    def common(sp, model=True):
        sp.add_argument("--db", required=True, metavar="URI", help="gallery folder or URI")
        if model:
            sp.add_argument("--model", required=True, metavar="ARTIFACT",
                            help="the artifact that embeds crops (.onnx, .xml, .engine, .pth); it must be the "
                                 "gallery's model")
        sp.add_argument("--no-progress", action="store_true", help="no progress bars")

    a = sub.add_parser("add", help="embed a camera's tracks into the gallery")
    common(a)
    a.add_argument("source", metavar="SOURCE", help="a folder of crops in Market-1501 / osnet-crops layout "
                   "(identities = tracks), or a video with --tracks")
    a.add_argument("--tracks", metavar="TRACKS.TXT", help="MOT tracks of the video (as examples/track.py writes)")
    a.add_argument("--camera", metavar="NAME", help="camera name (default: c<N> from Market file names, the "
                   "video's file stem for a video)")
    a.add_argument("--per", choices=("track", "crop"), default="track",
                   help="one entry per track (mean embedding, default) or per crop")
    a.add_argument("--fps", type=float, default=None, help="frames per second, for times in seconds (default: "
                   "the video's; frame numbers for crop folders)")
    a.add_argument("--start", type=float, default=0.0, metavar="SECONDS",
                   help="time of frame 0 (e.g. the recording's start as a Unix time), added to every time")
    a.add_argument("--thumbs", metavar="DIR", help="where a video's track thumbnails go (default: DB/thumbnails)")

    s = sub.add_parser("search", help="find a query's person on other cameras")
    common(s)
    s.add_argument("query", metavar="QUERY", help="a crop image, a folder of crops, or a stored track CAMERA:ID")
    s.add_argument("--top", type=int, default=10, metavar="K", help="matches per query (default 10)")
    s.add_argument("--camera", metavar="NAME", help="the query's camera (default: c<N> from Market file names)")
    s.add_argument("--per", choices=("track", "crop"), default="track",
                   help="a folder of crops: one query per identity (default) or per crop")
    s.add_argument("--same-camera", action="store_true", help="also match the query's own camera")
    s.add_argument("--cameras", metavar="A,B", help="only these cameras")
    s.add_argument("--after", type=float, help="only entries seen at or after this time")
    s.add_argument("--before", type=float, help="only entries seen at or before this time")
    s.add_argument("--exact", action="store_true", help="exact search even where an approximate index exists")
    s.add_argument("--json", metavar="OUT", help="write the matches as JSON")
    s.add_argument("--png", metavar="DIR", help="retrieval pictures, one per query")

    t = sub.add_parser("stats", help="entries, cameras, tracks, model, index")
    common(t, model=False)
    t.add_argument("--json", metavar="OUT", help="write the statistics as JSON")

    i = sub.add_parser("index", help="build the approximate index (for large galleries), compact the files")
    common(i, model=False)
    return add_version(p)


def _queries(g, args):
    from osnet_edge.gallery.sources import IMAGE_SUFFIXES, crop_files

    q = Path(args.query)
    if q.is_dir():
        return g.queries_from_crops(crop_files(q), args.camera, args.per)
    if q.is_file() and q.suffix.lower() in IMAGE_SUFFIXES:
        return g.queries_from_crops([q], args.camera, "crop")
    m = re.fullmatch(r"(.+):(\d+)", args.query)
    if m and not q.exists():
        return [g.query_from_track(m.group(1), int(m.group(2)))]
    from osnet_edge.gallery.errors import GalleryError

    raise GalleryError(f"query {args.query}: not a crop image, a folder of crops, nor a stored track CAMERA:ID")


def run(args) -> int:
    from osnet_edge.atomic import write_text
    from osnet_edge.gallery import Gallery, results_json

    if args.cmd == "add":
        with Gallery(args.db, args.model) as g:
            r = g.add_source(args.source, args.camera, args.tracks, args.per, args.fps, args.start, args.thumbs,
                             progress=not args.no_progress)
            print(f"{args.db}: +{r['entries']} entries ({r['tracks']} tracks, {r['crops']} crops, per {r['per']}); "
                  f"{g.store.count()} in all")
        return 0
    if args.cmd == "search":
        with Gallery(args.db, args.model, create=False) as g:
            queries = _queries(g, args)
            cams = [c for c in (args.cameras or "").split(",") if c] or None
            matches = g.search(queries, args.top, args.same_camera, cams, args.after, args.before,
                               True if args.exact else None)
            doc = results_json(queries, matches)
            if args.json:
                write_text(args.json, json.dumps(doc, indent=1) + "\n")
            if args.png:
                from osnet_edge.gallery.pictures import write_pictures

                write_pictures(queries, matches, args.png, args.top)
        for q, ms in zip(queries, matches):
            best = ", ".join(f"{m.camera}:{m.track} {m.score:.3f}" for m in ms[:3]) or "no match"
            print(f"{q.name}: {best}")
        if args.json or args.png:
            print(f"{len(queries)} queries" + (f" -> {args.json}" if args.json else "")
                  + (f" + pictures in {args.png}" if args.png else ""))
        return 0
    if args.cmd == "stats":
        g = Gallery(args.db, create=False)
        d = g.stats()
        if args.json:
            write_text(args.json, json.dumps(d, indent=1) + "\n")
        print(f"{d['uri']}: {d['entries']} entries, model {d['model']}, index {d['index']}")
        for c, v in d["cameras"].items():
            print(f"  {c}: {v['entries']} entries, {v['tracks']} tracks")
        return 0
    g = Gallery(args.db, create=False)
    r = g.build_index()
    print(f"{args.db}: {r['index']} over {r['rows']} entries ({r['partitions']} partitions)")
    return 0


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except OsnetEdgeError as exc:
        return report(PROG, exc)   # 1: a failure; 2: a usage error (osnet_edge.cli_convention)


if __name__ == "__main__":
    sys.exit(main())
