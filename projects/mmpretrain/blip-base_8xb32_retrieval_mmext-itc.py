# mmpretrain's BLIP retrieval fine-tuning (COCO, ViT-B/16 at 384 px, BERT-base) with its ITC head
# replaced by mmext's ITCLoss: a global batch of any size (no `queue_size % batch_size` assert),
# features of every rank in the queue, exact DDP gradients, and idx-based targets from the
# samples' `image_id` (several captions of one image are all positives).  BlipRetrieval computes
# the momentum features itself, shares its `temp` parameter with the head and calls
# `head.loss(([img, txt, img_m, txt_m],), data_samples)`, which ITCLoss implements.
#
# Needs mmpretrain's multimodal extra (`transformers`) and the COCO retrieval data, like the base.
_base_ = 'mmpretrain::blip/blip-base_8xb32_retrieval.py'

custom_imports = dict(imports=['mmext'], allow_failed_imports=False)
runner_type = 'mmext.Runner'

model = dict(
    head=dict(
        _delete_=True,
        type='mmext.ITCLoss',
        embed_dim=256,
        queue_size=57600,
        temperature=0.07,
        temp_range=(0.001, 0.5),
        use_distill=True,
        alpha=0.4))

# ALBEF/BLIP ramp alpha from 0 over the first epoch (mmpretrain's config: WarmupParamHook, 2)
custom_hooks = [dict(type='mmext.ITCAlphaWarmupHook', module_name='head')]
