# MaskFormer R50 on COCO panoptic (80 things + 53 stuff), multi-scale training, 75 epochs,
# 16 GPUs x 1 image (Cheng et al., NeurIPS 2021; published: 46.5 PQ with detectron2, mmdet's run:
# 46.9 PQ) with mmext.MaskFormerHead as the panoptic_head of mmdet's MaskFormer detector and
# mmext.MaskFormerFusionHead for the panoptic inference.  Inherits mmdet's MaskFormer config (its
# COCO-panoptic data, ResNet-50 with the transformer-encoder pixel decoder, schedule); mmdet's
# MaskFormer checkpoints load unchanged.
# Run: python tools/train.py configs/maskformer/maskformer_r50_ms-16xb1-75e_coco-panoptic.py
_base_ = ['mmdet::maskformer/maskformer_r50_ms-16xb1-75e_coco.py']

custom_imports = dict(imports=['mmext'], allow_failed_imports=False)
default_scope = 'mmext'

num_things_classes = 80
num_stuff_classes = 53
num_classes = num_things_classes + num_stuff_classes
_attn = dict(embed_dims=256, num_heads=8, dropout=0.1, batch_first=True)
_ffn = dict(
    embed_dims=256,
    feedforward_channels=2048,
    num_fcs=2,
    ffn_drop=0.1,
    act_cfg=dict(type='ReLU', inplace=True))
model = dict(
    panoptic_head=dict(
        _delete_=True,
        type='mmext.MaskFormerHead',
        in_channels=[256, 512, 1024, 2048],
        feat_channels=256,
        out_channels=256,
        num_things_classes=num_things_classes,
        num_stuff_classes=num_stuff_classes,
        num_queries=100,
        pixel_decoder=dict(
            type='mmext.TransformerEncoderPixelDecoder',
            norm_cfg=dict(type='GN', num_groups=32),
            act_cfg=dict(type='ReLU'),
            encoder=dict(num_layers=6, layer_cfg=dict(self_attn_cfg=_attn, ffn_cfg=_ffn)),
            positional_encoding=dict(num_feats=128, normalize=True)),
        enforce_decoder_input_project=False,
        positional_encoding=dict(num_feats=128, normalize=True),
        transformer_decoder=dict(
            num_layers=6,
            return_intermediate=True,
            layer_cfg=dict(self_attn_cfg=_attn, cross_attn_cfg=_attn, ffn_cfg=_ffn)),
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
            loss_weight=1.0)),
    panoptic_fusion_head=dict(
        _delete_=True,
        type='mmext.MaskFormerFusionHead',
        num_things_classes=num_things_classes,
        num_stuff_classes=num_stuff_classes,
        loss_panoptic=None,
        init_cfg=None),
    # mmdet's MaskFormer hands its train_cfg to the panoptic head
    train_cfg=dict(
        _delete_=True,
        assigner=dict(
            type='mmext.HungarianAssigner',
            match_costs=[
                dict(type='mmext.ClassificationCost', weight=1.0),
                dict(type='mmext.FocalLossCost', weight=20.0, binary_input=True),
                dict(type='mmext.DiceCost', weight=1.0, pred_act=True, eps=1.0)
            ]),
        sampler=dict(type='mmdet.MaskPseudoSampler')))
