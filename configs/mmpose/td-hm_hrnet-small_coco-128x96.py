# A small HRNet for tests, CI and the trained fixture: the HRNet-W32 256x192 recipe from mmpose
# (td-hm_hrnet-w32_8xb64-210e_coco-256x192) with one module of one block per stage, narrower branches
# (16/32/64/128 instead of 32/64/128/256) and a 128x96 input. Same architecture family and same ONNX ops
# (Conv, Relu, Add, Resize), so every conversion path is exercised; it compiles and simulates in seconds.
_base_ = ['mmpose::body_2d_keypoint/topdown_heatmap/coco/td-hm_hrnet-w32_8xb64-210e_coco-256x192.py']

codec = dict(type='MSRAHeatmap', input_size=(96, 128), heatmap_size=(24, 32), sigma=1)

model = dict(
    backbone=dict(
        extra=dict(
            stage1=dict(num_modules=1, num_branches=1, block='BOTTLENECK', num_blocks=(1, ),
                        num_channels=(32, )),
            stage2=dict(num_modules=1, num_branches=2, block='BASIC', num_blocks=(1, 1),
                        num_channels=(16, 32)),
            stage3=dict(num_modules=1, num_branches=3, block='BASIC', num_blocks=(1, 1, 1),
                        num_channels=(16, 32, 64)),
            stage4=dict(num_modules=1, num_branches=4, block='BASIC', num_blocks=(1, 1, 1, 1),
                        num_channels=(16, 32, 64, 128))),
        init_cfg=None),
    head=dict(in_channels=16, decoder=codec))

train_pipeline = [
    dict(type='LoadImage'),
    dict(type='GetBBoxCenterScale'),
    dict(type='RandomFlip', direction='horizontal'),
    dict(type='RandomHalfBody'),
    dict(type='RandomBBoxTransform'),
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
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=val_pipeline))
test_dataloader = val_dataloader
