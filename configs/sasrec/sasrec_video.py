# SASRec on the "Video" set shipped with pmixer/SASRec.pytorch (the PyTorch port of the SASRec
# paper's official code), python/data/Video.txt: 31,013 users, 23,715 items, 287,107
# interactions, with that code's recipe for sets of this size: max_len 50, d = 50, 2 blocks,
# 1 head, dropout 0.5, Adam (1e-3, betas 0.9/0.98), batch 128, BCE with one negative per
# position, one window (the user's last max_len items) per user and epoch.  20 epochs.
# Leave-one-out split; evaluated with full ranking over all items (seen items not excluded,
# ties averaged).  tools/benchmark/bench_sasrec_official.py compares it with the official code
# (configs/sasrec/README.md, "Versus the official code").
#
# The file is not redistributed here: convert the official `user item` lines to an atomic
# .inter file (timestamp = line number, which keeps each user's order) and put it at
# data/video/video.inter, e.g.
#   awk 'BEGIN{print "user_id:token\titem_id:token\ttimestamp:float"} {print $1"\t"$2"\t"NR}' \
#       SASRec.pytorch/python/data/Video.txt > data/video/video.inter
#   python tools/train.py configs/sasrec/sasrec_video.py
_base_ = ['./sasrec_ml100k.py']

data_file = 'data/video/video.inter'
max_len = 50
max_epochs = 20
seq_data = dict(
    type='LeaveOneOutSequenceDataset',
    ann_file=data_file,
    max_len=max_len,
    user_core=0,
    item_core=0,
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
    dropout=0.5,
    # the official code's dropout_rate acts on the embeddings, the attention weights and inside
    # and after the feed-forward net; its nn.MultiheadAttention output has none
    attn_output_dropout=0.,
    loss='bce',
    eval_mode='full')
train_dataloader = dict(batch_size=128, dataset=train_dataset)
val_dataloader = dict(dataset=dict(**seq_data, split='val', num_eval_negatives=0))
test_dataloader = dict(dataset=dict(**seq_data, split='test', num_eval_negatives=0))
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
default_hooks = dict(checkpoint=dict(interval=max_epochs))
# Adam as in the official code (lr 1e-3, betas 0.9/0.98); fused=True: one kernel per parameter
# instead of about ten tensor ops, 10x faster on CPU for the 1.2M-entry item table, same values
optim_wrapper = dict(optimizer=dict(type='Adam', lr=1e-3, betas=(0.9, 0.98), fused=True))
