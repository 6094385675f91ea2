"""Running a model: backends (onnx, cmodel, mlir, sail) behind one interface, and the person boxes ->
keypoints pipeline around them (the shared core's crop, normalise and decode)."""
