# SE-ResNet-50 + 3 deconvolutions at a 128x96 input for tests and CI: another architecture than HRNet
# (bottlenecks with squeeze-and-excitation: global average pool, Sigmoid, a broadcast Mul; ConvTranspose
# upsampling) through the same conversion path. mmpose's td-hm_seresnet50_8xb64-210e_coco-256x192 differs from
# its ResNet-50 config only in the backbone type and its pretrained weights, so this inherits the 128x96
# ResNet-50 config and swaps the backbone (resolved config tested equal to mmpose's at 128x96: test_archs).
_base_ = ['./td-hm_res50_coco-128x96.py']

model = dict(backbone=dict(type='SEResNet'))
