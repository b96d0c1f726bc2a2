# SASRec on MovieLens-1M as in the paper (Kang & McAuley, ICDM 2018, Sec. IV): every rating is
# an implicit interaction, users and items with fewer than 5 interactions are dropped (5-core,
# iterated to a fixed point), leave-one-out split, max_len 200, d = 50, 2 blocks, 1 head,
# dropout 0.2, Adam 1e-3, batch 128, BCE with one negative per position; evaluated like the
# paper: the held-out item against 100 negatives the user never interacted with (uniform).
# Paper, Table III (ML-1M): HR@10 0.8245, NDCG@10 0.5905.
#
# MovieLens terms forbid redistribution: bring the file yourself.  Expected format: RecBole's
# atomic ml-1m.inter (user_id:token item_id:token rating:float timestamp:float), e.g. from
# RecBole's dataset downloads or converted from ratings.dat (UserID::MovieID::Rating::Timestamp)
# with one tab-separated line per rating.  Put it at data/ml-1m/ml-1m.inter or edit `data_file`
# below (a python variable: --cfg-options data_file=... would not reach the copies made from it):
#   python tools/train.py configs/sasrec/sasrec_ml1m.py
_base_ = ['./sasrec_ml100k.py']

data_file = 'data/ml-1m/ml-1m.inter'
max_len = 200
max_epochs = 200
seq_data = dict(
    type='LeaveOneOutSequenceDataset',
    ann_file=data_file,
    max_len=max_len,
    user_core=5,
    item_core=5,
    min_rating=None)
# The official code trains on each user's last max_len items only (train_windows='last').
train_dataset = dict(**seq_data, split='train', train_windows='last', num_train_negatives=1)

model = dict(
    dataset='train_dataloader',  # num_items from the data the Runner trains on
    max_len=max_len,
    embed_dims=50,
    num_blocks=2,
    num_heads=1,
    ffn_dims=50,
    dropout=0.2,
    loss='bce',
    eval_mode='sampled')
train_dataloader = dict(batch_size=128, dataset=train_dataset)
val_dataloader = dict(
    dataset=dict(
        **seq_data, split='val', num_eval_negatives=100, eval_negative_distribution='uniform'))
test_dataloader = dict(
    dataset=dict(
        **seq_data, split='test', num_eval_negatives=100, eval_negative_distribution='uniform'))
train_cfg = dict(max_epochs=max_epochs, val_interval=20)
