# GRU4Rec on RSC15 / YooChoose clicks (RecSys Challenge 2015) — for people who have the files;
# nothing is downloaded.  Hyper-parameters of the official PyTorch release's
# paramfiles/rsc15_xe_shared_100_best.py (cross-entropy + logQ, shared embedding, 100 units);
# the official port reports Recall@20 0.7283 / MRR@20 0.3205 on this split (see README.md).
#
# Preprocessing = the official examples/rsc15/preprocess.py, done by SessionDataset itself:
# drop sessions of length 1, then items with < 5 events, then sessions with < 2 events; test =
# sessions ending in the last day (86400 s) of the log; test events with items unseen in
# training are dropped (and counted), then test sessions left with < 2 events.
#
# Set data_path below to the raw clicks file (no header, comma separated, ISO times), then
#   python tools/train.py configs/gru4rec/gru4rec_rsc15.py
# (gru4rec_rsc15_official_split.py reads the official script's rsc15_train_full.txt and
# rsc15_test.txt instead, for numbers on exactly the published split).  Reading and
# preprocessing the 33M raw clicks takes minutes and several GB of memory.
_base_ = ['../_base_/datasets/ml100k_sessions.py']

custom_imports = dict(imports=['mmext'], allow_failed_imports=False)
default_scope = 'mmext'

data_path = '/path/to/yoochoose-clicks.dat'  # edit: this value is copied into 4 places below
session_data = dict(
    data_path=data_path,
    test_data_path=None,
    file_format='session',
    columns=['SessionId', 'Time', 'ItemId', 'Category'],
    sep=',',
    session_gap=None,
    min_item_support=5,
    min_session_length=2,
    test_seconds=86400)
max_epochs = 10

train_dataloader = dict(batch_size=32, dataset=session_data)
val_dataloader = dict(batch_size=512, dataset=session_data)
test_dataloader = val_dataloader
model = dict(
    type='GRU4Rec',
    dataset='train_dataloader',  # num_items, popularity: from the data trained on
    hidden_sizes=(100, ),
    embedding='shared',
    dropout_p_embed=0.0,
    dropout_p_hidden=0.4,
    loss='ce',
    logq=1.0,
    num_negatives=2048,
    sample_alpha=0.5,
    bpreg=0.0)

train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=max_epochs)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='AdagradM', lr=0.2, momentum=0.2))
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=5000),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=2),
    sampler_seed=dict(type='DistSamplerSeedHook'))
env_cfg = dict(
    cudnn_benchmark=False, mp_cfg=dict(mp_start_method='fork'), dist_cfg=dict(backend='gloo'))
log_processor = dict(type='LogProcessor', window_size=50, by_epoch=True)
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=0)
