"""osnet_edge.export: ONNX / OpenVINO IR / TensorRT writers, each verified against PyTorch."""
