"""osnet_edge.calibration: INT8 calibration sets (folder of crops, dataset split, video + boxes)."""
