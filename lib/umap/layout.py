"""UMAP's layout optimisation: synchronous SGD on the cross-entropy, edges sampled by weight, negative sampling."""
import numpy as np
import torch

# umap-learn's constants.
REPULSION_STRENGTH = 1.0  # gamma
GRADIENT_CLIP = 4.0
REPULSION_EPSILON = 1e-3  # keeps the repulsive coefficient finite at distance 0
# Pairs at distance 0 get no step, as in umap-learn: their offset is 0. This floor
# keeps d^(2b-2) finite there (b < 1), so that 0 times it stays 0, not nan.
TINY_SQUARED_DISTANCE = 1e-30


def sampling_rates(weights, n_epochs):
    """(keep [E] bool, rate [E] of the kept): umap-learn drops edges lighter than max / n_epochs
    and samples the rest in proportion to their weight, the heaviest every epoch."""
    top = weights.max()
    keep = weights >= top / n_epochs
    return keep, weights[keep] / top


def true_indices(mask):
    """Positions of the True entries of a 1-D mask, int64."""
    if mask.is_cuda:
        return mask.nonzero().squeeze(1)
    return torch.from_numpy(np.flatnonzero(mask.numpy()))  # ~8x faster than torch's CPU nonzero


def add_at(target, index, values, alpha):
    """target[index] += alpha * values, repeated indices adding up, in a fixed order on every device."""
    if target.is_cuda:
        target.index_put_((index.long(),), values * alpha, accumulate=True)
    else:
        target.index_add_(0, index, values, alpha=alpha)


def optimize_layout(head, tail, heads, tails, rate, n_epochs, a, b, initial_alpha, negative_rate, generator):
    """SGD on the UMAP cross-entropy: the optimised copy of `head` [H, dim]; `tail` [T, dim] moves too if it is `head`.

    Edge e (heads[e] -> tails[e]) is sampled every 1 / rate[e] epochs (umap-learn's
    epochs_per_sample), about n_epochs * rate[e] times in all; each sample pulls its
    ends together and pushes its head away from `negative_rate` points of `tail`
    drawn at random. The learning rate falls linearly to 0.

    Negatives are read from a pool of random tail indices drawn once, at a random
    offset each epoch: drawing them afresh every epoch (Mersenne Twister on the CPU)
    took a third of the epoch's time.
    """
    move_tail = head is tail
    head_t = head.T.contiguous()  # [dim, H]: one contiguous row per coordinate for gathers and scatter-adds
    tail_t = head_t if move_tail else tail.T.contiguous()  # [dim, T]
    dim = len(head_t)
    heads, tails = heads.int(), tails.int()  # int32 gathers are faster on the CPU
    span = len(rate) * negative_rate  # most negatives one epoch can need
    pool = torch.randint(len(tail), (2 * span,), generator=generator, device=head.device, dtype=torch.int32)
    offsets = torch.rand(n_epochs, generator=generator, device=head.device, dtype=torch.float64).tolist()
    period = 1 / rate  # [E], umap-learn's epochs_per_sample
    next_sample = period.clone()  # [E]
    for epoch in range(n_epochs):
        active = true_indices(next_sample <= epoch + 1)  # [A]
        if len(active) == 0:
            continue
        next_sample.index_add_(0, active, period.index_select(0, active))
        h, t = heads.index_select(0, active), tails.index_select(0, active)  # [A]
        start = int(offsets[epoch] * (span + 1))
        negatives = pool[start:start + len(h) * negative_rate]  # [r A]
        y_h = head_t.index_select(1, h)  # [dim, A]
        attract = attraction_step(y_h - tail_t.index_select(1, t), a, b)  # [dim, A]
        y_n = tail_t.index_select(1, negatives).view(dim, negative_rate, len(h))  # [dim, r, A]
        repel = repulsion_step(y_h[:, None, :] - y_n, a, b)  # [dim, r, A]
        alpha = initial_alpha * (1 - epoch / n_epochs)
        head_step = attract + repel.sum(dim=1)  # [dim, A]
        for coordinate in range(dim):
            add_at(head_t[coordinate], h, head_step[coordinate], alpha)
            if move_tail:
                add_at(tail_t[coordinate], t, attract[coordinate], -alpha)
    return head_t.T.contiguous()


def squared_norms(diff):
    """|diff|^2 over dim 0 [dim, ...] -> [...]: a multiply-add per coordinate beats a sum over a dim of 2."""
    total = diff[0].square()
    for coordinate in diff[1:]:
        total.addcmul_(coordinate, coordinate)
    return total


def attraction_step(diff, a, b):
    """Clipped step -2ab d^(2b-2) / (1 + a d^2b) (y_i - y_j) of each edge, from `diff` = y_i - y_j [dim, ...]."""
    d2 = squared_norms(diff).clamp_min_(TINY_SQUARED_DISTANCE)
    power = d2.log().mul_(b - 1).exp_()  # d^(2b-2)
    coefficient = power.mul(-2 * a * b).div_(power.mul_(d2).mul_(a).add_(1))  # power becomes a d^2b + 1
    return diff.mul_(coefficient).clamp_(-GRADIENT_CLIP, GRADIENT_CLIP)


def repulsion_step(diff, a, b):
    """Clipped step 2 gamma b / ((eps + d^2)(1 + a d^2b)) (y_i - y_j) of each negative sample, `diff` [dim, ...]."""
    d2 = squared_norms(diff)
    denominator = d2.log().mul_(b).exp_().mul_(a).add_(1)  # a d^2b + 1
    denominator.mul_(d2.add_(REPULSION_EPSILON))
    coefficient = denominator.reciprocal_().mul_(2 * REPULSION_STRENGTH * b)
    return diff.mul_(coefficient).clamp_(-GRADIENT_CLIP, GRADIENT_CLIP)
