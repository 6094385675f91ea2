"""TPU-MLIR behind one door. Nothing outside this package imports tpu_mlir or runs its tools:
  installed   the installed package (its root on sys.path, imported with the environment kept), model_tool,
              a bmodel's or MLIR's chip
  runner      its command-line tools as subprocesses, one build directory and log each
  kernels     oneDNN's kernels pinned (same bytes on every CPU); chiplock: one simulated chip per process
  devtime     device time: the compiler's cycle estimate embedded in a bmodel, and one cmodel run's profile
  mlirgraph   .mlir files read with TPU-MLIR's own parser
  cali_table  calibration tables read
"""
