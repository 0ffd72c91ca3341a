"""osnet_edge.gallery: per-camera tracks in, "where else was this person seen" out, on an embedded vector
database (LanceDB) by default and the same code against shared storage or its server. The optional extra:
pip install 'osnet-edge[gallery]'. Torch-free.

    from osnet_edge.gallery import Gallery
    g = Gallery("galleries/site", model="osnet_x0_25_256x128_fp32.onnx")
    g.add_source("crops/cam2", camera="cam2")                            # or a video + tracks_file=
    matches = g.search(g.queries_from_crops(paths, camera="cam1"), k=10)  # other cameras only, by default

Modules: identity (the model a gallery belongs to), entries (per-crop / per-track rows), store (the LanceDB
table), sources (crops folders, video + MOT tracks), gallery (the Gallery class), pictures, cli.
"""
from .entries import Entry, crop_entries, track_entry
from .errors import GalleryError
from .gallery import Gallery, Match, Query, results_json
from .identity import ModelIdentity

__all__ = ["Entry", "Gallery", "GalleryError", "Match", "ModelIdentity", "Query", "crop_entries", "results_json",
           "track_entry"]
