"""What the user reads: the build report (HTML/MD/JSON), the calibration study and the benchmarks."""
