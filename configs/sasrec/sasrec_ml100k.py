# SASRec (Kang & McAuley, ICDM 2018) on MovieLens-100K, leave-one-out, trained as in the paper:
# binary cross-entropy of each position's next item against ONE negative sampled per position
# among the items the user never interacted with.  Evaluated with full ranking over all items
# (HR@10, NDCG@10, MRR@10; seen items not excluded, ties averaged).
#   python tools/train.py configs/sasrec/sasrec_ml100k.py        # ~2-3 min on 2 CPU cores
#   python tools/test.py configs/sasrec/sasrec_ml100k.py work_dirs/sasrec_ml100k/epoch_100.pth
_base_ = ['../_base_/datasets/ml100k_sequences.py']

custom_imports = dict(imports=['mmext'], allow_failed_imports=False)
default_scope = 'mmext'

max_epochs = 100

model = dict(
    type='SASRec',
    dataset='train_dataloader',  # num_items from the data the Runner trains on
    max_len={{_base_.max_len}},
    embed_dims=64,
    num_blocks=2,
    num_heads=1,
    ffn_dims=64,  # the paper's point-wise FFN keeps the width d
    dropout=0.2,  # paper: 0.2 on ML-1M
    act='relu',
    norm='pre',  # 'query_only' for the official code's blocks
    norm_eps=1e-8,
    loss='bce',
    eval_mode='full')

train_dataloader = dict(dataset=dict(num_train_negatives=1))

train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=10)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

optim_wrapper = dict(
    type='OptimWrapper',
    # paper: Adam, lr 1e-3, betas (0.9, 0.98), no weight decay
    optimizer=dict(type='Adam', lr=1e-3, betas=(0.9, 0.98)))

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(
        type='CheckpointHook', interval=10, max_keep_ckpts=1, save_best='ndcg@10', rule='greater'),
    sampler_seed=dict(type='DistSamplerSeedHook'))
env_cfg = dict(
    cudnn_benchmark=False, mp_cfg=dict(mp_start_method='fork'), dist_cfg=dict(backend='gloo'))
log_processor = dict(type='LogProcessor', window_size=20, by_epoch=True)
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=0)
