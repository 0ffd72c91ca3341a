"""Retrieval pictures of a re-ID evaluation, the way people judge a model: per sampled query, the query
and its top-k gallery matches in one image (torchreid's visrank layout: query on the left with a black
border, then the matches, green border = same identity, red = wrong), and the CMC curve as a PNG.

    from osnet_edge.visualize import write_ranked_results, plot_cmc
    res = evaluate("model.onnx", ds, keep_distmat=True)
    write_ranked_results(res.distmat, ds.query, ds.gallery, "vis/", k=10, n=20)

The distances are the evaluation's own (plain or re-ranked); gallery items of the query's identity
under the query's camera are skipped, as the protocol does. Torch-free: numpy + OpenCV compose the
pictures; matplotlib (the `bench` extra) only draws the CMC curve.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .atomic import atomic_path
from .errors import InputError

CELL = (256, 128)  # (H, W) every crop is resized to, as torchreid's visrank
BORDER = 5  # border width, px
GAP = 10  # between matches
QUERY_GAP = 90  # between the query and the first match
HEADER = 28  # text line above the crops
CAPTION = 40  # two text lines under each crop
BLACK, GREEN, RED, WHITE = (0, 0, 0), (0, 200, 0), (0, 0, 255), (255, 255, 255)  # BGR
_FONT_SCALE = 0.42


def check_output_dir(path) -> Path:
    """Fail early, before anything is computed or written, if `path` cannot become a writable folder."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InputError(f"--visualize {path}: exists and is not a folder")
    parent = path
    while not parent.exists():  # the nearest existing ancestor decides whether mkdir can work
        parent = parent.parent
    if not parent.is_dir():
        raise InputError(f"--visualize {path}: cannot create it, {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"--visualize {path}: {parent} is not writable")
    return path


def sample_queries(candidates, n: int, seed: int = 0) -> np.ndarray:
    """n of the candidate query indices, spread evenly over the list from a seeded random start."""
    candidates = np.asarray(candidates)
    if n <= 0 or len(candidates) == 0:
        return candidates[:0]
    if n >= len(candidates):
        return candidates
    step = len(candidates) / n
    start = np.random.default_rng(seed).uniform(0, step)
    return candidates[(start + step * np.arange(n)).astype(np.int64)]


def ranked_matches(dist_row, q_pid, q_cam, g_pids, g_cams, k: int):
    """Top-k gallery indices for one query (closest first, argsort's tie order as in evaluate_rank),
    skipping the query identity's own camera; and whether each is the query's identity."""
    order = np.argsort(dist_row)
    keep = ~((g_pids[order] == q_pid) & (g_cams[order] == q_cam))
    top = order[keep][:k]
    return top, g_pids[top] == q_pid


def _fit(cv2, img, size, border_colour):
    """Resize into a (H, W) cell whose outer BORDER pixels are the border colour exactly."""
    h, w = size
    inner = cv2.resize(img, (w - 2 * BORDER, h - 2 * BORDER), interpolation=cv2.INTER_AREA)
    return cv2.copyMakeBorder(inner, BORDER, BORDER, BORDER, BORDER, cv2.BORDER_CONSTANT, value=border_colour)


def _text(cv2, canvas, text, x, y, max_w, colour=BLACK):
    """One line of text at (x, baseline y), shortened with '..' so it stays inside max_w pixels."""
    font = cv2.FONT_HERSHEY_SIMPLEX
    while text and cv2.getTextSize(text, font, _FONT_SCALE, 1)[0][0] > max_w:
        text = text[:-3] + ".." if len(text) > 3 else text[:-1]
    cv2.putText(canvas, text, (x, y), font, _FONT_SCALE, colour, 1, cv2.LINE_AA)


def cell_x(j: int, width: int = CELL[1]) -> int:
    """Left edge of column j (0 = the query, 1.. = rank 1..)."""
    return 0 if j == 0 else width + QUERY_GAP + (j - 1) * (width + GAP)


def compose(query_img, gallery_imgs, correct, header: str, query_caption, captions, k=None, cell=CELL) -> np.ndarray:
    """One picture: a header line, the query (black border) then the matches (green / red border), each
    with a two-line caption below. The canvas has room for k matches (default: as many as given)."""
    from .deps import require

    cv2 = require("cv2", "retrieval pictures")
    h, w = cell
    k = len(gallery_imgs) if k is None else k
    canvas = np.full((HEADER + h + CAPTION, cell_x(k, w) + w if k else w, 3), 255, np.uint8)
    _text(cv2, canvas, header, 4, HEADER - 9, canvas.shape[1] - 8)
    columns = [(query_img, BLACK, query_caption)]
    columns += [(img, GREEN if ok else RED, cap) for img, ok, cap in zip(gallery_imgs, correct, captions)]
    for j, (img, colour, caption) in enumerate(columns):
        x = cell_x(j, w)
        canvas[HEADER:HEADER + h, x:x + w] = _fit(cv2, img, (h, w), colour)
        for line_no, line in enumerate(caption):
            _text(cv2, canvas, line, x + 2, HEADER + h + 16 + 17 * line_no, w - 2,
                  colour=BLACK if j == 0 or line_no else colour)
    return canvas


def _scored_queries(q_pids, g_pids, q_cams, g_cams):
    """Queries the protocol scores: their identity appears in the gallery under another camera."""
    out = []
    for i, (p, c) in enumerate(zip(q_pids, q_cams)):
        if np.any((g_pids == p) & (g_cams != c)):
            out.append(i)
    return np.asarray(out, np.int64)


def write_ranked_results(distmat, query, gallery, out_dir, k: int = 10, n: int = 20, seed: int = 0,
                         progress: bool = True, cell=CELL) -> list[Path]:
    """For n sampled queries, write <out_dir>/q<index>_<query file stem>.png with its top-k matches.

    distmat: (num_query, num_gallery) distances as the evaluation ranked them; query, gallery: the
    dataset's samples (anything with .path, .pid, .camid). Returns the written paths, in query order.
    Captions: rank, identity, camera (numbered from 1, as in Market-1501's file names: the datasets'
    camids are 0-based) and distance. Only queries the protocol scores are sampled.
    Each picture is written to a temporary file and renamed, so none is ever half-written.
    """
    from .deps import require
    from .evaluation import _progress, load_images

    cv2 = require("cv2", "retrieval pictures")
    distmat = np.asarray(distmat)
    if distmat.shape != (len(query), len(gallery)):
        raise InputError(f"distmat is {distmat.shape[0]}x{distmat.shape[1]} but the dataset has "
                         f"{len(query)} query and {len(gallery)} gallery images")
    if k < 1 or n < 1:
        raise InputError(f"retrieval pictures need k >= 1 and n >= 1 (got k={k}, n={n})")
    out_dir = check_output_dir(out_dir)
    q_pids = np.array([s.pid for s in query])
    g_pids = np.array([s.pid for s in gallery])
    q_cams = np.array([s.camid for s in query])
    g_cams = np.array([s.camid for s in gallery])
    chosen = sample_queries(_scored_queries(q_pids, g_pids, q_cams, g_cams), n, seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    bar = _progress(len(chosen), "pictures", progress)
    for qi in chosen:
        q = query[qi]
        top, correct = ranked_matches(distmat[qi], q_pids[qi], q_cams[qi], g_pids, g_cams, k)
        q_img, *g_imgs = load_images([q.path] + [gallery[g].path for g in top])
        first = int(np.argmax(correct)) + 1 if correct.any() else None
        header = (f"query {Path(q.path).name}  id {q.pid}  cam {q.camid + 1}:  {int(correct.sum())} of top "
                  f"{len(top)} correct, " + (f"first at rank {first}" if first else "none correct"))
        captions = [(f"#{r} id {gallery[g].pid}", f"cam {gallery[g].camid + 1}  d {distmat[qi, g]:.3g}")
                    for r, g in enumerate(top, start=1)]
        picture = compose(q_img, g_imgs, correct, header, ("query", f"id {q.pid} cam {q.camid + 1}"), captions, k,
                          cell)
        path = out_dir / f"q{qi:05d}_{Path(q.path).stem}.png"
        with atomic_path(path) as tmp:
            if not cv2.imwrite(str(tmp), picture):
                raise InputError(f"could not write {path}")
        written.append(path)
        bar.update(1)
    bar.close()
    return written


def plot_cmc(results, path) -> Path | None:
    """CMC curves (one per EvalResult) as a PNG, rank-1/5/10/20 marked. Returns None, after saying so in
    one line, when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # no display on camera boxes or CI
        import matplotlib.pyplot as plt
    except ImportError:
        print(f"matplotlib is not installed (pip install 'osnet-edge[bench]'): CMC plot {path} skipped")
        return None
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    try:
        lowest = 100.0
        for r in results:
            cmc = 100 * np.asarray(r.cmc, np.float64)
            lowest = min(lowest, float(cmc[0]))
            ranks = np.arange(1, len(cmc) + 1)
            label = f"{r.dataset or 'eval'}: mAP {100 * r.mAP:.1f}%, rank-1 {cmc[0]:.1f}%"
            line, = ax.plot(ranks, cmc, label=label)
            marks = [m for m in (1, 5, 10, 20) if m <= len(cmc)]
            ax.plot(marks, cmc[np.array(marks) - 1], "o", color=line.get_color(), ms=4)
            for m in marks:
                ax.annotate(f"{cmc[m - 1]:.1f}", (m, cmc[m - 1]), textcoords="offset points", xytext=(3, -11),
                            fontsize=7, color=line.get_color())
        ax.set_xlabel("rank")
        ax.set_ylabel("matching rate (%)")
        ax.set_ylim(max(0.0, lowest - 8), 101)  # room for the rank-1 label under its point
        title = "CMC" + (f" ({results[0].metric}{', re-ranked' if results[0].rerank else ''})" if results else "")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
        fig.tight_layout()
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=110)
    finally:
        plt.close(fig)
    return Path(path)
