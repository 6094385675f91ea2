# The data section both trained-fixture recipes share (td-hm_hrnet-small_coco-128x96_fixture-train.py,
# rtmpose-t_coco-256x192_fixture-train.py), as a second _base_ of each. mmengine refuses a key that two bases
# both define, and each model's own base already defines the dataloaders and the evaluator: so this file
# defines only `fixture_*` names, which the recipes read as `_base_.fixture_*`.
#
# All bundled persons in one COCO file (coco_val_mini: 22 images/39 persons, mmpose_coco: 4 images/12
# persons; written by bmpose.experiments.train.write_bundled_coco). Top-down mode keeps the 51 persons with
# keypoints, trained and validated on (ground-truth boxes, no augmentation when validating).
fixture_data_root = '{{ fileDirname }}/../../data/'
fixture_bundled = dict(type='CocoDataset', data_mode='topdown', data_root=fixture_data_root,
                       ann_file='person_keypoints_bundled.json', data_prefix=dict(img=''))
# Single process, no workers: 2 shared cores, and the augmentation draws from the seeded global RNGs.
fixture_train_loader = dict(batch_size=8, num_workers=0, persistent_workers=False,
                            sampler=dict(type='DefaultSampler', shuffle=True))
fixture_val_loader = dict(batch_size=32, num_workers=0, persistent_workers=False, drop_last=False,
                          sampler=dict(type='DefaultSampler', shuffle=False, round_up=False))
fixture_evaluator = dict(type='CocoMetric', ann_file=fixture_data_root + 'person_keypoints_bundled.json')
fixture_hooks = dict(logger=dict(type='LoggerHook', interval=20),
                     checkpoint=dict(type='CheckpointHook', interval=-1, save_best=None, save_last=False))
