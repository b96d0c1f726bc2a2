# The ITC digits demo (itc_vit-tiny_digits_demo.py) with its embedding trajectory: every 4
# epochs (and before training) mmext.EmbeddingTrajectoryHook embeds the same 160 held-out images
# and their captions with the dual encoder's image and text projections, one shared space
# (11 snapshots in <work_dir>/trajectory/); tools/analysis/embedding_trajectory.py draws both
# kinds together (circles: images, triangles: captions).
#     python tools/train.py configs/itc/itc_vit-tiny_digits_trajectory.py \
#         --work-dir work_dirs/itc_trajectory
#     python tools/analysis/embedding_trajectory.py work_dirs/itc_trajectory
_base_ = ['./itc_vit-tiny_digits_demo.py']

custom_hooks = [
    # ALBEF ramps the distillation weight over the first epoch (as the demo)
    dict(type='ITCAlphaWarmupHook', module_name='loss_itc'),
    dict(
        type='EmbeddingTrajectoryHook',
        interval=4,  # epochs: 40 / 4 + the untrained model = 11 snapshots
        by_epoch=True,
        probe_size=160,
        seed=0,
        embedding='itc',  # image_features and text_features of DualEncoderITC
        thumbnail_size=32),
]
