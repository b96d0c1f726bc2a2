"""The Markdown tables of one model's comparison."""

__all__ = ['report']


def report(result: dict) -> str:
    if result['quality'] is None:
        t = result['times']
        lines = [
            f"{result['model']}: seconds per epoch = median seconds per call "
            f"({result['repeats']} timed calls, each the same fraction of an epoch on "
            'both sides) / steps per call x steps per epoch',
            '| | RecBole 1.2.1 | mmext | mmext / RecBole |', '|---|---|---|---|',
            f"| steps per epoch (per call) | {t['recbole']['steps_per_epoch']} "
            f"({t['recbole']['steps_per_call']}) | {t['mmext']['steps_per_epoch']} "
            f"({t['mmext']['steps_per_call']}) | |"
        ]
        for key in ('wall', 'cpu'):
            lines.append(f"| {key} s/epoch | {t['recbole'][key]:.2f} | {t['mmext'][key]:.2f} | "
                         f"{t['mmext'][key] / t['recbole'][key]:.3f} |")
        return '\n'.join(lines)
    t, q = result['times'], result['quality']
    lines = [
        f"{result['model']}: seconds per epoch (median of epochs 2..N) and quality after "
        f"the last epoch"
    ]
    if 'recbole_replayed_from' in result:
        lines.append(f"(RecBole's side replayed from {result['recbole_replayed_from']}: its "
                     'times come from that run)')
    lines += ['| | RecBole 1.2.1 | mmext | mmext / RecBole |', '|---|---|---|---|']
    for key in ('wall', 'cpu'):
        lines.append(f"| {key} s/epoch | {t['recbole'][key]:.2f} | {t['mmext'][key]:.2f} | "
                     f"{t['mmext'][key] / t['recbole'][key]:.3f} |")
    for split in ('valid', 'test'):
        for m in ('ndcg@10', 'recall@10', 'mrr@10'):
            r, o = q['recbole'][split][m], q['mmext'][split][m]
            lines.append(f'| {split} {m} | {r:.4f} | {o:.4f} | '
                         f'{o / r if r else float("nan"):.3f} |')
    if 'best_quality' in result:
        b, e = result['best_quality'], result['best_epoch']
        lines.append(f"| best-validation epoch | {e['recbole']} | {e['mmext']} | |")
        for split in ('valid', 'test'):
            for m in ('ndcg@10', 'recall@10', 'mrr@10'):
                r, o = b['recbole'][split][m], b['mmext'][split][m]
                lines.append(f'| best-val epoch: {split} {m} | {r:.4f} | {o:.4f} | '
                             f'{o / r if r else float("nan"):.3f} |')
    for epochs, rows in result.get('paired', {}).items():
        lines.append(f'paired over the users both sides evaluate, each user averaged over '
                     f'{epochs}: mmext − RecBole ± standard error across users')
        lines += [
            '| | users | RecBole | mmext | difference ± SE | difference / SE |',
            '|---|---|---|---|---|---|'
        ]
        for name, p in rows.items():
            lines.append(f"| {name} | {p['users']} | {p['recbole']:.4f} | {p['mmext']:.4f} | "
                         f"{p['diff']:+.4f} ± {p['se']:.4f} | {p['diff'] / p['se']:+.2f} |")
    return '\n'.join(lines)
