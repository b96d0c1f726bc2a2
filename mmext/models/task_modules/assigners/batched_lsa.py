"""Exact linear sum assignment for a whole batch of cost matrices at once.

The solver is the shortest-augmenting-path form of the Hungarian method (Kuhn, "The Hungarian
method for the assignment problem", 1955; Munkres, "Algorithms for the assignment and
transportation problems", 1957) in the variant of Jonker & Volgenant ("A shortest augmenting path
algorithm for dense and sparse linear assignment problems", Computing 1987), with the rectangular
extension described by Crouse ("On implementing 2D rectangular assignment algorithms", IEEE TAES
2016) -- the algorithm behind ``scipy.optimize.linear_sum_assignment``.

For an ``n x m`` problem with ``n <= m`` it adds the rows one at a time.  Adding a row runs a
Dijkstra search over reduced costs ``c[i, j] - u[i] - v[j]`` (non-negative by the dual
invariant) from the new row until it reaches a free column, updates the duals ``u, v`` so that
the invariant holds again, and flips the matching along the path found.  After all ``n`` rows
are added the matching is optimal: every matched edge has zero reduced cost and all reduced
costs are non-negative (complementary slackness).  Worst case ``O(n^2 m)``.

Here every image of a batch runs the same step at the same time: all tensors carry a leading
batch dimension, the Python loops run over rows to add and over Dijkstra/augmentation steps (up
to the longest of the batch), never over images, and nothing leaves the cost's device except
a few sizes and the "is every image done?" flag of each loop step.  All arithmetic is float64,
so for float32 or float64 inputs the search compares exactly the numbers scipy compares.
"""
from typing import List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

__all__ = ['batched_linear_sum_assignment', 'check_finite', 'nonfinite_blocks', 'nonfinite_images',
           'valid_mask']

IntsLike = Union[Tensor, Sequence[int]]


def valid_mask(num_rows: Tensor, num_cols: Tensor, R: int, C: int) -> Tensor:
    """``[B, R, C]`` bool mask of each image's ``[:num_rows[b], :num_cols[b]]`` block."""
    rows = torch.arange(R, device=num_rows.device)
    cols = torch.arange(C, device=num_rows.device)
    return (rows[None, :, None] < num_rows[:, None, None]) & \
        (cols[None, None, :] < num_cols[:, None, None])


def nonfinite_images(cost: Tensor, valid: Optional[Tensor] = None) -> Tensor:
    """``[B]`` bool: which images hold NaN/inf inside their valid block.

    A float64 sum of float32 entries is finite iff every entry is, and one reduction is much
    cheaper than an elementwise ``isfinite`` pass plus ``any``; a non-finite sum is confirmed
    entry by entry, so float64 costs near overflow are not rejected.
    """
    c = cost.detach()
    if valid is not None:
        c = torch.where(valid, c, c.new_zeros(()))
    bad = ~torch.isfinite(c.sum((1, 2), dtype=torch.float64))
    if bool(bad.any()):  # rare: confirm entry by entry (huge finite float64 can overflow a sum)
        bad = ~torch.isfinite(c).flatten(1).all(1)
    return bad


def nonfinite_blocks(cost: Tensor, num_rows: Tensor,
                     num_cols: Tensor) -> Tuple[Tensor, Optional[Tensor]]:
    """``[B]`` bool of the images whose ``[:num_rows[b], :num_cols[b]]`` block of ``cost``
    holds NaN/inf, and the valid mask used (``None`` when every block fills the tensor)."""
    B, R, C = cost.shape
    full = bool(((num_rows == R) & (num_cols == C)).all())
    valid = None if full else valid_mask(num_rows, num_cols, R, C)
    bad = nonfinite_images(cost)  # padding is usually finite: mask only when something is off
    if valid is not None and bool(bad.any()):
        bad = nonfinite_images(cost, valid)
    return bad, valid


def check_finite(cost: Tensor, num_rows: Tensor, num_cols: Tensor, what: str = 'cost') -> None:
    """Raise ``ValueError`` naming ``what`` and the images whose valid block holds NaN/inf.

    ``cost`` is ``[B, R, C]``; only ``[:num_rows[b], :num_cols[b]]`` of image ``b`` is checked,
    so padding may hold anything.
    """
    bad, _ = nonfinite_blocks(cost, num_rows, num_cols)
    if bool(bad.any()):  # one host sync for the whole batch
        imgs = bad.nonzero().flatten().tolist()
        raise ValueError(f'{what} has NaN or inf entries in image(s) {imgs} of the batch '
                         '(0-based image index); the assignment is undefined.')


def _as_counts(x: Optional[IntsLike], batch: int, default: int, device: torch.device) -> Tensor:
    if x is None:
        return torch.full((batch, ), default, dtype=torch.long, device=device)
    t = torch.as_tensor(x, dtype=torch.long, device=device).flatten()
    if t.numel() != batch:
        raise ValueError(f'expected {batch} counts, got {t.numel()}')
    return t


def _solve_wide(cost: Tensor, n_rows: Tensor, n_cols: Tensor) -> Tensor:
    """Solve ``[B, R, C]`` problems with ``n_rows[b] <= n_cols[b]``; return ``col4row [B, R]``.

    ``col4row[b, i]`` is the column matched to row ``i`` (``-1`` for padded rows).  Costs outside
    an image's valid block are never read into a decision.
    """
    B, R, C = cost.shape
    dev = cost.device
    inf = torch.tensor(float('inf'), dtype=cost.dtype, device=dev)
    bidx = torch.arange(B, device=dev)
    col_ok = torch.arange(C, device=dev)[None, :] < n_cols[:, None]  # [B, C]

    u = cost.new_zeros(B, R)
    v = cost.new_zeros(B, C)
    col4row = torch.full((B, R), -1, dtype=torch.long, device=dev)
    row4col = torch.full((B, C), -1, dtype=torch.long, device=dev)
    path = torch.full((B, C), -1, dtype=torch.long, device=dev)

    for cur in range(R):
        active = cur < n_rows  # [B] images that still have a row to add
        spc = torch.full((B, C), float('inf'), dtype=cost.dtype, device=dev)  # shortest path cost
        in_sr = torch.zeros(B, R, dtype=torch.bool, device=dev)  # rows reached by the search
        in_sc = torch.zeros(B, C, dtype=torch.bool, device=dev)  # columns settled (scanned)
        min_val = cost.new_zeros(B)
        row = torch.full((B, ), cur, dtype=torch.long, device=dev)
        sink = torch.full((B, ), -1, dtype=torch.long, device=dev)
        searching = active.clone()

        # Dijkstra from row `cur` until a free column is settled, all images in lock step.
        while bool(searching.any()):
            in_sr[bidx, row] |= searching
            reduced = min_val[:, None] + cost[bidx, row] - u[bidx, row][:, None] - v
            open_col = col_ok & ~in_sc
            better = open_col & (reduced < spc) & searching[:, None]
            path = torch.where(better, row[:, None], path)
            spc = torch.where(better, reduced, spc)
            cand = torch.where(open_col, spc, inf)
            low = cand.amin(1)  # amin: values only, much faster than min(dim) on CPU
            at_low = cand == low[:, None]
            # Among equally short columns prefer a free one: it ends the search sooner (scipy
            # does the same); any choice keeps the result optimal.
            free_low = at_low & (row4col < 0)
            pick = torch.where(free_low.any(1), free_low.byte().argmax(1), at_low.byte().argmax(1))
            min_val = torch.where(searching, low, min_val)
            in_sc[bidx, pick] |= searching
            nxt = row4col[bidx, pick]
            found = searching & (nxt < 0)
            sink = torch.where(found, pick, sink)
            row = torch.where(searching & ~found, nxt, row)
            searching = searching & ~found

        # Dual update keeps c - u - v >= 0 everywhere and == 0 on the matching and the path.
        delta_c = torch.where(in_sc, min_val[:, None] - spc, v.new_zeros(()))
        v = v - delta_c
        matched_col = col4row.clamp(min=0)
        delta_r = torch.where(in_sr, min_val[:, None] - spc.gather(1, matched_col),
                              u.new_zeros(()))
        delta_r[:, cur] = torch.where(active, min_val, u.new_zeros(()))
        u = u + delta_r

        # Flip the matching along the alternating path sink -> ... -> row `cur`.
        col = sink
        walking = active.clone()
        while bool(walking.any()):
            c = col.clamp(min=0)
            r = path[bidx, c]
            r_safe = r.clamp(min=0)
            row4col[bidx, c] = torch.where(walking, r, row4col[bidx, c])
            prev = col4row[bidx, r_safe]
            col4row[bidx, r_safe] = torch.where(walking, c, prev)
            walking = walking & (r != cur)
            col = torch.where(walking, prev, col)
    return col4row


def batched_linear_sum_assignment(
        cost: Tensor,
        num_gts: Optional[IntsLike] = None,
        num_preds: Optional[IntsLike] = None,
        check: bool = True) -> List[Tuple[Tensor, Tensor]]:
    """Minimum-cost matchings of a batch of padded ``[B, Q, G_max]`` cost matrices, exactly.

    Image ``b`` uses the block ``cost[b, :num_preds[b], :num_gts[b]]`` (defaults: the full
    sizes); the rest is padding and may hold anything.  Both ``Q > G`` and ``Q < G`` are
    allowed, per image.

    Args:
        cost: ``[B, Q, G_max]`` costs, any float dtype, on any device.
        num_gts: Valid columns per image (tensor or list of ``B`` ints).
        num_preds: Valid rows per image. Defaults to ``Q`` for every image.
        check: Raise ``ValueError`` when a valid block holds NaN or inf.

    Returns:
        ``B`` pairs ``(row_ind, col_ind)`` of ``long`` tensors on ``cost``'s device, as
        ``scipy.optimize.linear_sum_assignment`` returns them: ``row_ind`` ascending,
        ``min(num_preds[b], num_gts[b])`` pairs each.
    """
    if cost.dim() != 3:
        raise ValueError(f'cost must be [B, Q, G], got shape {tuple(cost.shape)}')
    B, Q, G = cost.shape
    dev = cost.device
    n_g = _as_counts(num_gts, B, G, dev).clamp(0, G)
    n_q = _as_counts(num_preds, B, Q, dev).clamp(0, Q)
    if check:
        check_finite(cost, n_q, n_g)
    if B == 0:
        return []
    c64 = cost.detach().to(torch.float64)

    # Put the smaller side of every image on the rows (the search adds rows one at a time and
    # needs n <= m).  Images may differ in orientation, so swap per image on a square pad.
    flip = n_g < n_q  # usual DETR case: fewer targets than queries -> targets become rows
    S = max(Q, G)
    if bool(flip.all()):
        sq = c64.transpose(1, 2)
    elif not bool(flip.any()):
        sq = c64
    else:
        sq = c64.new_zeros(B, S, S)
        sq[:, :Q, :G] = c64
        sq = torch.where(flip[:, None, None], sq.transpose(1, 2), sq)
    n_rows = torch.minimum(n_q, n_g)
    n_cols = torch.maximum(n_q, n_g)
    R = int(n_rows.max()) if B else 0
    C = int(n_cols.max()) if B else 0
    col4row = _solve_wide(sq[:, :R, :C].contiguous(), n_rows, n_cols)  # [B, R]

    # Back to (query, target) pairs, sorted by query index as scipy returns them.
    ar = torch.arange(R, device=dev).expand(B, R)
    q_of = torch.where(flip[:, None], col4row, ar)
    g_of = torch.where(flip[:, None], ar, col4row)
    valid = ar < n_rows[:, None]
    key = torch.where(valid, q_of, torch.full_like(q_of, S + 1))
    order = key.argsort(1)
    q_sorted = q_of.gather(1, order)
    g_sorted = g_of.gather(1, order)
    counts = n_rows.tolist()
    return [(q_sorted[b, :k], g_sorted[b, :k]) for b, k in enumerate(counts)]
