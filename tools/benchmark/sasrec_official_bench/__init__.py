"""The pieces of ``tools/benchmark/bench_sasrec_official.py`` (our SASRec vs pmixer/SASRec.pytorch).

* :mod:`.data`: the interaction file in the official format (``user item`` lines, time order per
  user), the atomic ``.inter`` copy that our dataset reads, and the evaluation tasks both sides
  score;
* :mod:`.protocol`: the common evaluation (ranks of the held-out item, full and sampled) and the
  metrics from those ranks;
* :mod:`.cputime`: CPU seconds of this process and of all its live and finished descendants
  (pmixer's sampler runs in worker processes);
* :mod:`.official_side`: pmixer's side, a worker in its own venv that imports the checkout's
  ``model.py`` and ``utils.py`` and trains the way its ``main.py`` does;
* :mod:`.ours_side`: our side, a worker in the project venv that trains through mmengine's Runner
  from ``configs/sasrec/sasrec_video.py``;
* :mod:`.report`: the mapping of hyper-parameters and the Markdown tables;
* :mod:`.profile_ours`: where our training step's time goes (``--profile-steps``).

Nothing here imports mmext or torch at module level: the official venv runs the workers from
this package.
"""
