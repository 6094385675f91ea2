# Training recipe of the RTMPose-t trained fixture (`bmpose train --model rtmpose-t_256x192`): mmpose's
# rtmpose-t_8xb256-420e_coco-256x192 (architecture, SimCC codec and KLDiscretLoss unchanged) fitted on the 51
# real COCO val2017 persons bundled in data, on the CPU, from scratch (no download: the CSPNeXt backbone
# is not pretrained here).
#
# A fixture, not a pose model: trained and evaluated on the same 51 persons, so that INT8 effects on RTMCCHead
# can be measured on weights that have learnt something (random ones have not). Changes to mmpose's recipe,
# all for 51 persons on 2 CPU cores: plain BN (no SyncBN), no pretrained backbone, batch 8, AdamW without the
# 1024-batch LR scaling, horizontal flip as the only augmentation (the flip test needs it; no half-body,
# shift/scale/rotation, HSV or Albumentation blur/dropout, no stage-2 pipeline switch).
# Measured (2-core EPYC, 1 torch thread, ~4.4 s an epoch): with the HRNet fixture's augmentation (half-body,
# scale 0.75-1.25, rotation 30) the from-scratch CSPNeXt did not fit in 300 epochs (loss 0.076 -> 0.068, AP
# 0.000 at epoch 200); without augmentation it fits but the flip test then halves the AP (0.18 at epoch 60,
# the flipped pass was never trained); flip only: AP 0.0005 / 0.0066 / 0.58 / 0.87 at epochs 25/50/75/100.
_base_ = ['mmpose::body_2d_keypoint/rtmpose/coco/rtmpose-t_8xb256-420e_coco-256x192.py', './fixture_data.py']

codec = dict(type='SimCCLabel', input_size=(192, 256), sigma=(4.9, 5.66), simcc_split_ratio=2.0,
             normalize=False, use_dark=False)

model = dict(backbone=dict(norm_cfg=dict(type='BN'), init_cfg=None))

max_epochs = 100
base_lr = 2e-3
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=25)
optim_wrapper = dict(optimizer=dict(type='AdamW', lr=base_lr, weight_decay=0.))
param_scheduler = [
    dict(type='LinearLR', begin=0, end=40, start_factor=0.01, by_epoch=False),  # warm-up, iterations
    dict(type='CosineAnnealingLR', T_max=max_epochs, eta_min=base_lr * 0.01, begin=0, end=max_epochs,
         by_epoch=True),
]
auto_scale_lr = dict(enable=False, base_batch_size=8)
custom_hooks = []

train_pipeline = [
    dict(type='LoadImage'),
    dict(type='GetBBoxCenterScale'),
    dict(type='RandomFlip', direction='horizontal'),
    dict(type='TopdownAffine', input_size=codec['input_size']),
    dict(type='GenerateTarget', encoder=codec),
    dict(type='PackPoseInputs')
]
val_pipeline = [
    dict(type='LoadImage'),
    dict(type='GetBBoxCenterScale'),
    dict(type='TopdownAffine', input_size=codec['input_size']),
    dict(type='PackPoseInputs')
]

bundled = _base_.fixture_bundled   # the shared data section (fixture_data.py)
train_dataloader = dict(_delete_=True, **_base_.fixture_train_loader, dataset=dict(**bundled, pipeline=train_pipeline))
val_dataloader = dict(_delete_=True, **_base_.fixture_val_loader,
                      dataset=dict(**bundled, pipeline=val_pipeline, test_mode=True))
test_dataloader = val_dataloader
val_evaluator = dict(_delete_=True, **_base_.fixture_evaluator)
test_evaluator = val_evaluator

default_hooks = _base_.fixture_hooks
randomness = dict(seed=0, deterministic=True)
