# MovieLens-100K as per-user item sequences with the leave-one-out split
# (mmext/datasets/recsys/sequence_dataset.py): per user, in time order (ties keep file order),
# last item = test target, second-to-last = validation target, the rest = training sequence.
# ann_file='' reads recbole/dataset_example/ml-100k/ml-100k.inter from the installed recbole
# wheel (pip install --no-deps recbole==1.2.1); set ann_file to any RecBole .inter file instead.
# No filtering: ml-100k users all have >= 20 ratings; every rating counts as an interaction.
max_len = 50
seq_data = dict(
    type='LeaveOneOutSequenceDataset',
    ann_file='',
    max_len=max_len,
    user_core=0,
    item_core=0,
    min_rating=None)

train_dataset = dict(
    **seq_data,
    split='train',
    # every training interaction is a target once per epoch: non-overlapping windows of
    # max_len (the official code keeps only each user's last window)
    train_windows='all',
    num_train_negatives=0)
train_dataloader = dict(
    batch_size=128,
    num_workers=0,  # 2-core machines: the data is in memory, workers only add overhead
    sampler=dict(type='DefaultSampler', shuffle=True),
    # registered in mmext's FUNCTIONS: the scope prefix is required (mmengine looks functions
    # up in its root registry otherwise)
    collate_fn=dict(type='mmext.sequence_collate'),
    dataset=train_dataset)
val_dataloader = dict(
    batch_size=256,
    num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='mmext.sequence_collate'),
    dataset=dict(**seq_data, split='val', num_eval_negatives=0))
test_dataloader = dict(
    batch_size=256,
    num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='mmext.sequence_collate'),
    dataset=dict(**seq_data, split='test', num_eval_negatives=0))

# Full ranking over all items; seen items are NOT excluded (RecBole's protocol for sequential
# models, so numbers compare with tools/benchmark/bench_recbole.py).  A list, not a dict: a dict
# with a `metrics` key would be read by mmengine as an Evaluator config.
val_evaluator = [
    dict(
        type='RankingMetric',
        topk=[10],
        metrics=['hr', 'ndcg', 'mrr'],
        tie_policy='average',
        exclude_seen=False)
]
test_evaluator = val_evaluator
