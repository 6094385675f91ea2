"""What makes models and variants to compare: the trained fixture (`train`), the calibration study (`study`),
the calibration-set fragility sweep (`fragility`) and the benchmarks (`bench`). They ask convert's Pipeline
for what they need and write their results as JSON; bmpose.report only reads those."""
