"""The pieces of ``tools/benchmark/bench_recbole.py`` (our SASRec and GRU4Rec vs RecBole 1.2.1).

* :mod:`.data`: the one interaction file both sides read;
* :mod:`.recbole_side`: RecBole's side, a worker in RecBole's own venv (no mmext import there),
  driven from here, or replayed from an earlier run;
* :mod:`.ours`: our side, trained and evaluated in this process;
* :mod:`.compare`: both sides epoch by epoch (or step by step), and the paired per-user
  difference;
* :mod:`.report`: the Markdown tables.

Nothing here imports mmext or torch at module level: RecBole's venv imports this package to run
its worker.  ``bench_recbole.py`` is the command line (``main(argv)``).
"""
