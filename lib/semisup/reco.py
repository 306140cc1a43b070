"""ReCo, the regional contrastive loss (Liu, Zhi, Johns, Davison, "Bootstrapping Semantic Segmentation with
Regional Contrast", ICLR 2022), as S4AL+ (Eq. 1) adds it to the cross-entropy of training.

For every class c among the labeled pixels of a batch, with unit-norm embeddings r:

    loss_c = mean over queries q of  -log( exp(q.k+ / t) / (exp(q.k+ / t) + sum_n exp(q.k-_n / t)) )
    loss   = sum_c loss_c / (number of classes in the batch)

- k+ (positive key): the mean embedding of c's pixels, L2-normalised (ReCo compares by cosine similarity).
- queries: c's hard pixels, where the model's probability *of class c* is below the strong threshold
  (0.97), as in ReCo's code: a pixel confidently predicted as another class is the hardest query, not an
  easy one. Up to `num_queries` distinct ones, all of them when there are fewer: ReCo draws exactly
  `num_queries` with replacement, whose expected loss is this mean. A class without a hard pixel has
  nothing left to learn; it adds 0 but still counts in the average (ReCo's normalisation), so the term
  fades as the model grows confident.
- k-_n (negative keys): `num_negatives` per query, each the embedding of a labeled pixel of another
  class; the class is drawn with probability softmax(cos(k+_c, k+_other) / t), so classes that look
  alike (bus, train) are contrasted more often than unrelated ones (ReCo's hard negative sampling).
- keys carry no gradient (ReCo): the loss moves the queries towards their class and away from others.
- only pixels with a label, true or pseudo, take part; with fewer than 2 classes there is no negative
  and the loss is 0.

Every draw comes from the `torch.Generator` passed in, so a training step is reproducible.
"""
import torch
import torch.nn.functional as F

from lib import seeding
from lib.cli import float_in, positive_float, positive_int
from lib.data.base import IGNORE_INDEX
from lib.semisup.flags import FlagTable

# Liu et al.'s defaults (lorenmt/reco train_semisup.py l.23-29; lib.semisup.flags). S4AL+'s code changes three
# (Nishant213/MMLAL core_models.py l.361-364: 128 queries, 256 negatives, strong threshold 0.95), which
# scripts/lib/s4al.sh sets. ReCo's weak threshold (0.7, l.23) is no flag: only pixels with a label take part, and
# pseudo labels have passed --pseudo-threshold, as in S4AL+'s code (core_models.py l.417-430).
RECO_FLAGS = {
    "embed_dim": (positive_int, 256, "channels of the head's unit-norm embeddings"),
    "reco_weight": (positive_float, 1.0, "weight of the loss beside the cross-entropy"),
    "reco_temperature": (positive_float, 0.5, "temperature of the similarities and of the negative classes' sampling"),
    "reco_queries": (positive_int, 256, "hard pixels per class and step that are pulled to their class mean"),
    "reco_negatives": (positive_int, 512, "pixels of other classes each query is pushed from"),
    "reco_strong_threshold": (float_in(0, 1, open_low=True), 0.97,
                              "a pixel is a query while its label's probability is below this"),
}


def reco_loss(embeddings, labels, probs, strong_threshold, temperature, num_queries, num_negatives, generator):
    """embeddings [B, D, h, w] (unit norm over D), labels [B, h, w] (IGNORE_INDEX: no label), probs [B, C, h, w]
    (softmax of the predictions, no gradient) -> the loss, a scalar tensor."""
    dim, num_classes = embeddings.shape[1], probs.shape[1]
    labels = labels.reshape(-1)  # [P]
    labeled = labels != IGNORE_INDEX  # [P]
    pixels = embeddings.float().permute(0, 2, 3, 1).reshape(-1, dim)[labeled]  # [N, D]
    labels = labels[labeled].long()  # [N]
    label_probs = probs.permute(0, 2, 3, 1).reshape(-1, num_classes)[labeled]  # [N, C]
    label_probs = label_probs.gather(1, labels[:, None])[:, 0]  # [N]: each pixel's probability of its own class
    classes, inverse, counts = labels.unique(return_inverse=True, return_counts=True)  # [K], [N], [K]
    if len(classes) < 2:
        return embeddings.new_zeros((), dtype=torch.float32)
    # Pixels sorted by class: class k holds rows starting[k] .. starting[k] + counts[k] - 1.
    order = inverse.argsort(stable=True)  # [N]
    by_class = pixels.detach()[order]  # [N, D]
    starting = counts.cumsum(0) - counts  # [K]
    sums = pixels.new_zeros(len(classes), dim).index_add_(0, inverse, pixels.detach())  # [K, D]
    keys = F.normalize(sums, dim=1)  # [K, D]: the class means, normalised
    hard = label_probs < strong_threshold  # [N]
    total = pixels.new_zeros(())
    for k in range(len(classes)):
        candidates = (hard & (inverse == k)).nonzero()[:, 0]  # [H_k]
        if len(candidates) == 0:
            continue
        chosen = candidates[torch.randperm(len(candidates), generator=generator, device=candidates.device)]
        queries = pixels[chosen[:num_queries]]  # [Q, D]
        rows = sample_negatives(keys, k, counts, starting, len(queries) * num_negatives, temperature, generator)
        # One matrix product with every pixel, then a gather: cheaper than gathering [Q, M, D] negative
        # embeddings, and backward keeps no per-class copy of them.
        negative = (queries @ by_class.T).gather(1, rows.view(len(queries), num_negatives))  # [Q, M]
        positive = queries @ keys[k]  # [Q]
        logits = torch.cat([positive[:, None], negative], dim=1) / temperature  # [Q, 1 + M], the positive first
        total = total + F.cross_entropy(logits, logits.new_zeros(len(queries), dtype=torch.long))
    return total / len(classes)


def sample_negatives(keys, k, counts, starting, size, temperature, generator):
    """`size` rows of the class-sorted pixels (counts [K] per class, starting [K] at rows), none of class k: a class
    drawn by the softmax of its key's cosine similarity to keys[k] over `temperature`, then one of its pixels.
    keys [K, D] -> [size] row indices."""
    others = torch.cat([torch.arange(k), torch.arange(k + 1, len(keys))]).to(keys.device)  # [K-1]
    weights = torch.softmax(keys[others] @ keys[k] / temperature, dim=0)  # [K-1]
    drawn = others[torch.multinomial(weights, size, replacement=True, generator=generator)]  # [size]
    # The remainder of a 62-bit draw is uniform over the class's pixels up to a bias of count / 2**62.
    within = torch.randint(2**62, (size,), generator=generator, device=keys.device) % counts[drawn]  # [size]
    return starting[drawn] + within


class ReCo(FlagTable):
    """The weighted ReCo term of a training step: the batch's targets and the model's predictions brought to the
    embeddings' resolution, draws seeded by (seed, epoch, step) (lib.seeding); --contrastive reco."""

    summary = ("a representation head trained with ReCo's regional contrastive loss beside the cross-entropy "
               "(S4AL+), on every pixel with a true or pseudo label")

    FLAGS, MODE, CHOSEN_BY = RECO_FLAGS, "reco", "contrastive"

    def __init__(self, weight, strong_threshold, temperature, num_queries, num_negatives, seed):
        self.weight, self.strong_threshold, self.temperature = weight, strong_threshold, temperature
        self.num_queries, self.num_negatives, self.seed = num_queries, num_negatives, seed

    @classmethod
    def from_args(cls, args):
        return cls(args.reco_weight, args.reco_strong_threshold, args.reco_temperature, args.reco_queries,
                   args.reco_negatives, args.seed)

    @staticmethod
    def model_args(args):
        """The representation head of the model (lib.models.build_model)."""
        return {"embed_dim": args.embed_dim}

    def __call__(self, logits, embeddings, masks, epoch, step):
        """logits [B, C, H, W], embeddings [B, D, h, w], masks [B, H, W] (IGNORE_INDEX: no label) -> weighted loss."""
        size = embeddings.shape[-2:]
        # Nearest, as ReCo: a label is one pixel's, never a blend of two classes.
        labels = F.interpolate(masks[:, None].float(), size=size, mode="nearest")[:, 0].long()  # [B, h, w]
        probs = F.interpolate(logits.detach().float(), size=size, mode="nearest").softmax(dim=1)  # [B, C, h, w]
        generator = seeding.reco_generator(self.seed, epoch, step, embeddings.device)
        return self.weight * reco_loss(embeddings, labels, probs, self.strong_threshold, self.temperature,
                                       self.num_queries, self.num_negatives, generator)
