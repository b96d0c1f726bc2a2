"""The official GRU4Rec benchmark's two sides (tools/benchmark/bench_gru4rec_official.py)."""
