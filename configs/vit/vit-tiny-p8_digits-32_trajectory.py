# The ViT digits demo (vit-tiny-p8_digits-32_demo.py) with its embedding trajectory: every 2
# epochs (and before training) mmext.EmbeddingTrajectoryHook embeds the same 240 held-out images
# with the pooled feature the classification head reads (21 snapshots in
# <work_dir>/trajectory/); tools/analysis/embedding_trajectory.py turns them into a GIF.
#     make demo-trajectory
# or
#     python tools/train.py configs/vit/vit-tiny-p8_digits-32_trajectory.py \
#         --work-dir work_dirs/vit_trajectory
#     python tools/analysis/embedding_trajectory.py work_dirs/vit_trajectory
_base_ = ['./vit-tiny-p8_digits-32_demo.py']

custom_hooks = [
    dict(
        type='EmbeddingTrajectoryHook',
        interval=2,  # epochs: 40 / 2 + the untrained model = 21 snapshots
        by_epoch=True,
        probe_size=240,  # of the 359 validation images
        seed=0,
        embedding='classifier',  # extract_feat(stage='pre_logits'): the ViT's pooled feature
        thumbnail_size=32)
]
