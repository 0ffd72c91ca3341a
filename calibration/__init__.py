"""osnet_edge.calibration: INT8 calibration sets (folder of crops, dataset split, video + boxes).

All crops go through osnet_edge.preprocess.to_batch (the one preprocessing) with the artifact's metadata.
"""
from osnet_edge.calibration.errors import CalibrationError
from osnet_edge.calibration.sources import (DEFAULT_SIZE, MIN_CROPS, RECOMMENDED_MIN, CropSet, Split, calibration_split,
                                            even_sample, from_folder, from_market, from_mot, generated, load_source)
from osnet_edge.calibration.video import read_mot_boxes

__all__ = ["DEFAULT_SIZE", "MIN_CROPS", "RECOMMENDED_MIN", "CalibrationError", "CropSet", "Split",
           "calibration_split", "even_sample", "from_folder", "from_market", "from_mot", "generated", "load_source",
           "read_mot_boxes"]
