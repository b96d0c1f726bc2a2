# SASRec on MovieLens-100K trained with full softmax cross-entropy over all items instead of
# the paper's one-negative BCE (Klenitskiy & Vasilev, RecSys 2023: much stronger, and what
# RecBole's SASRec uses by default, loss_type='CE').  Same data, model and evaluation.
#   python tools/train.py configs/sasrec/sasrec_ce_ml100k.py
_base_ = ['./sasrec_ml100k.py']

max_epochs = 40
model = dict(loss='ce')
train_dataloader = dict(dataset=dict(num_train_negatives=0))
train_cfg = dict(max_epochs=max_epochs, val_interval=10)
default_hooks = dict(checkpoint=dict(interval=10))
