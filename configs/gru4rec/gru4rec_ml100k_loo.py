# GRU4Rec on MovieLens-100K with the leave-one-out split of configs/sasrec (the same split as
# LeaveOneOutSequenceDataset: per user, time order with ties in file order, no filtering; last
# item = test, second-to-last = validation), so GRU4Rec and SASRec numbers compare directly.
# Each user's whole history is one session; evaluation walks it and scores only the held-out item
# (full ranking, seen items not excluded, as configs/sasrec).
#   python tools/train.py configs/gru4rec/gru4rec_ml100k_loo.py
_base_ = ['./gru4rec_ml100k.py']

loo = dict(session_gap=None, min_item_support=1, split_mode='leave_one_out')
train_dataloader = dict(dataset=loo)
val_dataloader = dict(dataset=dict(split='valid', **loo))
test_dataloader = dict(dataset=dict(split='test', **loo))
val_evaluator = [
    dict(
        type='RankingMetric',
        topk=(10, 20),
        metrics=('hr', 'mrr', 'ndcg'),
        tie_policy='average',
        exclude_seen=False)
]
test_evaluator = val_evaluator
