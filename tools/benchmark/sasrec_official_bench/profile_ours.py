"""Where our training step's time goes (``bench_sasrec_official.py --profile-steps N``).

Builds what the Runner builds from ``configs/sasrec/sasrec_video.py`` (dataset, dataloader,
model, optimiser wrapper) on the benchmark's data file, and reports, per step and in CPU
milliseconds: the dataloader's batch (sampling, padding, negatives, collate) and the model's
``train_step`` (forward, loss, backward, optimiser) on batches drawn beforehand; then the
torch operators of ``N`` train steps by self CPU time (``torch.profiler``).
"""
import time

__all__ = ['profile_ours']


def profile_ours(config: str,
                 ann_file: str,
                 model_overrides: dict,
                 steps: int,
                 seed: int,
                 rows: int = 25) -> None:
    import torch
    from mmengine.config import Config
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import DefaultScope
    from mmengine.runner import Runner
    from torch.profiler import ProfilerActivity, profile

    import mmext  # noqa: F401  (registries)
    from mmext.registry import MODELS

    cfg = Config.fromfile(config)
    cfg.train_dataloader.dataset.ann_file = ann_file
    cfg.model.update(model_overrides)
    cfg.model.dataset = cfg.train_dataloader.dataset  # what mmext.Runner resolves
    torch.manual_seed(seed)
    with DefaultScope.overwrite_default_scope('mmext'):
        model = MODELS.build(cfg.model)
        loader = Runner.build_dataloader(cfg.train_dataloader, seed=seed)
        optim = build_optim_wrapper(model, cfg.optim_wrapper)
    model.train()
    batches = iter(loader)
    cpu = time.process_time()
    data = [next(batches) for _ in range(steps)]
    data_ms = (time.process_time() - cpu) / steps * 1e3
    for batch in data[:3]:  # warm-up
        model.train_step(batch, optim)
    cpu = time.process_time()
    for batch in data:
        model.train_step(batch, optim)
    step_ms = (time.process_time() - cpu) / steps * 1e3
    print(f'CPU ms per step: dataloader batch {data_ms:.1f}, train_step {step_ms:.1f} '
          f'({steps} steps, {torch.get_num_threads()} thread(s), batch '
          f'{cfg.train_dataloader.batch_size})')
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for batch in data:
            model.train_step(batch, optim)
    print(prof.key_averages().table(sort_by='self_cpu_time_total', row_limit=rows))
