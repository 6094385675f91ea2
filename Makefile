# bmpose: the pipeline's table of contents. Each target is one `bmpose` call; `bmpose <cmd> --help` has more.
# Variables: MODEL CHECKPOINT CALIB COCO_ANN COCO_IMG CHIPS BATCHES QTABLE SEARCH METHOD TOL IMAGES BACKEND BOXES DYNAMIC
#            ONLY PRECISIONS (bench) DETECTOR PRECISION (detector)
SHELL := /bin/bash
MODEL ?= hrnet_small_128x96
CALIB ?= coco
VENV := .venv
# TPU-MLIR's tools call each other through PATH (#!/usr/bin/env python3): .venv/bin must come first.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
BMPOSE := $(VENV)/bin/bmpose
opt = $(if $(strip $($(1))),$(2) $(strip $($(1))))
COMMON = --model $(MODEL) $(call opt,CHECKPOINT,--checkpoint)
CALIB_ARGS = --calib $(CALIB) $(call opt,COCO_ANN,--coco-ann) $(call opt,COCO_IMG,--coco-img) $(call opt,CALIB_N,--num)
# TOL="int8_cos=0.98 fp32_cos=0.9999" overrides the config's gates (recorded in the manifests).
BUILD_ARGS = $(call opt,CHIPS,--chips) $(call opt,BATCHES,--batches) $(foreach t,$(TOL),--tolerance $(t))

.PHONY: blazepose-onnx setup fixture onnx calib fp32 fp16 bf16 int8 auto detector deploy nntc infer eval report study train-fixture bench test test-quick clean help
help:
	@sed -n '1,3p' Makefile; echo; grep -E '^[a-z0-9-]+:.*##' Makefile | sed 's/:.*##/\t/'

setup: ## create/refresh .venv (Python 3.10, pinned TPU-MLIR, torch, mmpose); seconds when up to date
	@bash scripts/setup.sh

fixture: setup ## deterministic random-init checkpoints for every bundled config (MODEL=... for one)
	$(BMPOSE) fixture $(if $(filter command line environment,$(origin MODEL)),--model $(MODEL))

onnx: setup ## mmpose config + checkpoint -> ONNX batch 1 and 4, checked against PyTorch
	$(BMPOSE) export $(COMMON) $(call opt,BATCHES,--batches) $(if $(filter 1,$(DYNAMIC)),--dynamic)

calib: setup ## calibration LMDB (CALIB=coco | dir:PATH | lmdb:PATH) + contact sheet
	$(BMPOSE) calib $(COMMON) $(CALIB_ARGS)

fp32: setup ## FP32 bmodels for CHIPS x BATCHES, compare files, report
	$(BMPOSE) build --precision fp32 $(COMMON) $(BUILD_ARGS)

fp16: setup ## FP16 bmodels (BM1684 has none) for CHIPS x BATCHES, compare files, report
	$(BMPOSE) build --precision fp16 $(COMMON) $(BUILD_ARGS)

bf16: setup ## BF16 bmodels (BM1684 has none) for CHIPS x BATCHES, compare files, report
	$(BMPOSE) build --precision bf16 $(COMMON) $(BUILD_ARGS)

auto: setup ## per chip, the fastest build that agrees with float (searched at batch 1: floats, INT8, + tools, + sensitive layers in F16), then built at BATCHES
	$(BMPOSE) build --precision auto $(COMMON) $(call opt,CHIPS,--chips) $(call opt,BATCHES,--batches) $(CALIB_ARGS) $(call opt,QTABLE,--qtable) \
	  $(call opt,METHOD,--method) $(foreach t,$(TOL),--tolerance $(t))

int8: setup ## INT8 bmodels (calibrated on CALIB, FP32 tail, QTABLE=extra, SEARCH=1), compare files, report
	$(BMPOSE) build --precision int8 $(COMMON) $(BUILD_ARGS) $(CALIB_ARGS) $(call opt,QTABLE,--qtable) \
	  $(call opt,METHOD,--method) $(if $(filter 1,$(SEARCH)),--search)

detector: setup ## person detector bmodels (DETECTOR=yolox_nano_416, CHIPS, PRECISION), boxes scored vs ONNX, report
	$(BMPOSE) detector $(call opt,DETECTOR,--detector) $(call opt,CHIPS,--chips) $(call opt,PRECISION,--precision)

deploy: setup ## device bundle per chip in artifacts/<model>/deploy (bmodels INT8+FP32 or PRECISIONS="auto fp32", detector, bmodel.py, README, .tar.gz)
	$(BMPOSE) deploy $(COMMON) $(call opt,CHIPS,--chips) $(call opt,BATCHES,--batches) $(CALIB_ARGS) \
	  $(call opt,PRECISIONS,--precisions) $(call opt,DETECTOR,--detector)

nntc: setup ## NNTC (BMNNSDK2 2.7) bundle for BM1684 in artifacts/<model>/nntc: opset-12 ONNX, ufw LMDB, scripts
	$(BMPOSE) nntc $(COMMON) $(CALIB_ARGS) $(call opt,METHOD,--method)

infer: setup ## images (IMAGES=file|folder|video, BOXES=detector:yolox_nano_416) -> vis_results/ + results json
	$(BMPOSE) infer $(COMMON) $(call opt,IMAGES,--images) $(call opt,BACKEND,--backend) $(call opt,BOXES,--boxes)

eval: setup ## COCO keypoint AP for ONNX and every built bmodel
	$(BMPOSE) eval $(COMMON) $(call opt,COCO_ANN,--coco-ann) $(call opt,COCO_IMG,--coco-img)

report: setup ## artifacts/<model>/report/index.html, report.md, report.json
	$(BMPOSE) report $(COMMON)

study: setup ## INT8 calibration study (methods x fp32 layers x TOOLS="none search_threshold bc" x chips) into the report
	$(BMPOSE) study $(COMMON) $(call opt,CHIPS,--chips) $(call opt,METHODS,--methods) $(call opt,LAYERS,--layers) \
	  $(call opt,TOOLS,--tools)

blazepose-onnx: ## configs/blazepose/pose_landmark_lite.onnx again from the npm package (tf2onnx in a throwaway venv)
	bash scripts/blazepose/make_onnx.sh lite

train-fixture: setup ## train a fixture on the bundled COCO persons (seeded; MODEL=rtmpose-t_256x192 too)
	$(BMPOSE) train --model $(MODEL)

bench: setup ## benchmarks: ratios measured in one run (ONLY=estimate CHIPS= PRECISIONS= BATCHES=: compile-only device time)
	$(BMPOSE) bench $(COMMON) $(foreach o,$(ONLY),--only $(o)) $(call opt,CHIPS,--chips) \
	  $(call opt,PRECISIONS,--precisions) $(call opt,BATCHES,--batches)

test: setup ## the full test suite (what CI runs)
	$(VENV)/bin/python -m pytest -q -ra --durations=25

test-quick: setup ## the fast tests only (skips `slow`)
	$(VENV)/bin/python -m pytest -q -m "not slow"

clean: ## remove build outputs (keeps .venv)
	rm -rf artifacts vis_results
