# GRU4Rec on the official RSC15 split: the output of the official examples/rsc15/preprocess.py
# (rsc15_train_full.txt for training, rsc15_test.txt for testing; tab separated, header
# SessionId ItemId Time).  Edit the two paths, then
#   python tools/train.py configs/gru4rec/gru4rec_rsc15_official_split.py
_base_ = ['./gru4rec_rsc15.py']

train_path = '/path/to/rsc15_train_full.txt'
test_path = '/path/to/rsc15_test.txt'
official = dict(
    data_path=train_path, test_data_path=test_path, columns=None, sep='\t',
    min_item_support=1)  # already filtered by the official script

train_dataloader = dict(dataset=official)
val_dataloader = dict(dataset=official)
test_dataloader = dict(dataset=official)
