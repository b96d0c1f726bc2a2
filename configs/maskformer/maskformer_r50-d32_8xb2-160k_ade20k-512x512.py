# MaskFormer R50 on ADE20K-150, 512x512 crops, 160k iterations, 8 GPUs x 2 images (Cheng et al.,
# NeurIPS 2021; published: 44.5 mIoU single-scale with detectron2, mmseg's run: 44.29) with
# mmext.MaskFormerHead in mmseg's EncoderDecoder.  Inherits mmseg's MaskFormer config (its
# ADE20K dataset, schedule, runtime, ResNet-50 and optimiser) and swaps in mmext's head, pixel
# decoder, Dice loss and batched Hungarian assigner.  mmseg's MaskFormer checkpoints load
# unchanged (the head's legacy keys are mapped on load).
# Run: python tools/train.py configs/maskformer/maskformer_r50-d32_8xb2-160k_ade20k-512x512.py
_base_ = ['mmseg::maskformer/maskformer_r50-d32_8xb2-160k_ade20k-512x512.py']

custom_imports = dict(imports=['mmext'], allow_failed_imports=False)
default_scope = 'mmext'

num_classes = 150
_attn = dict(
    embed_dims=256, num_heads=8, attn_drop=0.1, proj_drop=0.1, dropout_layer=None, batch_first=True)
model = dict(
    decode_head=dict(
        _delete_=True,
        type='mmext.MaskFormerHead',
        in_channels=[256, 512, 1024, 2048],
        in_index=[0, 1, 2, 3],
        feat_channels=256,
        out_channels=256,
        num_classes=num_classes,
        num_queries=100,
        ignore_index=255,
        # the FPN pixel decoder (the transformer predictor attends to C5 through a 1x1 conv)
        pixel_decoder=dict(
            type='mmext.PixelDecoder',
            norm_cfg=dict(type='GN', num_groups=32),
            act_cfg=dict(type='ReLU')),
        enforce_decoder_input_project=False,
        positional_encoding=dict(num_feats=128, normalize=True),
        transformer_decoder=dict(
            num_layers=6,
            return_intermediate=True,
            layer_cfg=dict(
                self_attn_cfg=_attn,
                cross_attn_cfg=_attn,
                ffn_cfg=dict(
                    embed_dims=256,
                    feedforward_channels=2048,
                    num_fcs=2,
                    act_cfg=dict(type='ReLU', inplace=True),
                    ffn_drop=0.1,
                    dropout_layer=None,
                    add_identity=True))),
        loss_cls=dict(
            type='mmdet.CrossEntropyLoss',
            use_sigmoid=False,
            loss_weight=1.0,
            reduction='mean',
            class_weight=[1.0] * num_classes + [0.1]),
        loss_mask=dict(
            type='mmdet.FocalLoss',
            use_sigmoid=True,
            gamma=2.0,
            alpha=0.25,
            reduction='mean',
            loss_weight=20.0),
        loss_dice=dict(
            type='mmext.DiceLoss',
            use_sigmoid=True,
            activate=True,
            reduction='mean',
            naive_dice=True,
            eps=1.0,
            loss_weight=1.0),
        train_cfg=dict(
            assigner=dict(
                type='mmext.HungarianAssigner',
                match_costs=[
                    dict(type='mmext.ClassificationCost', weight=1.0),
                    dict(type='mmext.FocalLossCost', weight=20.0, binary_input=True),
                    dict(type='mmext.DiceCost', weight=1.0, pred_act=True, eps=1.0)
                ]),
            sampler=dict(type='mmdet.MaskPseudoSampler'))))
