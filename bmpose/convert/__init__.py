"""TPU-MLIR driver: ONNX -> top MLIR -> calibration table -> F32/F16/BF16/INT8 bmodels, verified and compared.

Where each stage writes: bmpose.layout. Which chips and precisions: bmpose.chips. The chain a build starts
with: convert.pipeline.
"""
