[bmprofile] arch=BM1684X
[bmprofile] net_name=hrnet_small_128x96
[bmprofile] tpu_freq=1000
[bmprofile] is_mlir=1
...Start Profile Log...
[bmprofile] start to run subnet_id=0
[bmprofile] start parallel.
[bmprofile] end parallel.
