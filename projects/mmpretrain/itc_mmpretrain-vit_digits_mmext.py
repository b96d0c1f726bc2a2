# An mmpretrain user's config (mmpretrain's default scope) training mmext's dual encoder with
# mmext's ITC loss around *mmpretrain's* VisionTransformer: the ITC stage of BLIP retrieval
# (unimodal encoders, momentum copies, queues, momentum distillation, idx targets) on the
# download-free digits/captions data.  Everything mmext is reached through custom_imports and the
# `mmext.` prefix.
_base_ = '../../configs/itc/itc_vit-tiny_digits_demo.py'

custom_imports = dict(imports=['mmext'], allow_failed_imports=False)
default_scope = 'mmpretrain'
runner_type = 'mmext.Runner'

model = dict(
    type='mmext.DualEncoderITC',
    data_preprocessor=dict(type='ClsDataPreprocessor'),
    image_encoder=dict(
        _delete_=True,
        type='VisionTransformer',  # mmpretrain's, in its own scope
        arch=dict(embed_dims=192, num_layers=4, num_heads=3, feedforward_channels=768),
        img_size=16,
        patch_size=4,
        in_channels=1,
        out_type='cls_token',
        init_cfg=None),
    text_encoder=dict(type='mmext.TextTransformer'),
    tokenizer=dict(type='mmext.WordTokenizer'),
    loss=dict(type='mmext.ITCLoss'))

train_dataloader = dict(dataset=dict(type='mmext.DigitsCaptionDataset'))
val_dataloader = dict(dataset=dict(type='mmext.DigitsCaptionDataset'))
test_dataloader = val_dataloader
val_evaluator = [
    dict(type='mmext.ZeroShotAccuracy', topk=(1, )),
    dict(type='mmext.RetrievalRecall', topk=(1, 5), relevance_key='gt_label'),
]
test_evaluator = val_evaluator
custom_hooks = [dict(type='mmext.ITCAlphaWarmupHook', module_name='loss_itc')]
