# RecBole 1.2.1's SASRec, as RecBole trains it by default, on MovieLens-100K, built from mmext
# parts: post-LN BERT blocks with an input LayerNorm (norm='post'), no dropout inside the FFN,
# GELU, LayerNorm eps 1e-12, N(0, 0.02) init, positions counted from the oldest item
# (position_origin='left'), hidden 64, 2 blocks, 2 heads, inner 256, dropout 0.5, softmax CE
# over all items, Adam 1e-3, 2048 prefixes per step, max_len 50.  With these options our model
# matches RecBole's to 1e-5 on identical weights (tests/models/recommenders/
# test_sasrec_recbole_parity.py).  Training is RecBole's too: one window per training target
# (train_stride=1), the loss on its newest position only, i.e. every prefix once per epoch; our
# model runs only that position's query in the last block, so an epoch costs about a quarter of
# RecBole's (docs/benchmarks.md, "Per-prefix training").
#   python tools/train.py configs/sasrec/sasrec_recbole_ml100k.py
_base_ = ['./sasrec_ml100k.py']

max_epochs = 20
model = dict(
    num_heads=2,
    ffn_dims=256,
    dropout=0.5,
    ffn_dropout=0.0,
    act='gelu',
    norm='post',
    norm_eps=1e-12,
    loss='ce',
    init_std=0.02,
    position_origin='left')
train_dataloader = dict(batch_size=2048, dataset=dict(num_train_negatives=0, train_stride=1))
train_cfg = dict(max_epochs=max_epochs, val_interval=1)  # RecBole validates every epoch
optim_wrapper = dict(optimizer=dict(type='Adam', lr=1e-3, betas=(0.9, 0.999)))
default_hooks = dict(checkpoint=dict(interval=5), logger=dict(interval=10))
