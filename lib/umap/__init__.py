"""UMAP on torch tensors: a 2-D (or n-D) map of feature vectors, on the GPU when there is one.

McInnes, Healy & Melville, "UMAP: Uniform Manifold Approximation and Projection for
Dimension Reduction", arXiv:1802.03426, 2018. The steps are the paper's (and
umap-learn's, whose constants are kept): a k-NN graph, smooth-kNN calibration of
each point's distances (rho, sigma), the fuzzy union P + P^T - P*P^T, a spectral
initialisation, and SGD on the cross-entropy layout loss with negative sampling.

What differs from umap-learn 0.5 (Euclidean metric only, no supervision, no densMAP):

- The k-NN graph is exact at every size (chunked float32 matrix products: only
  neighbours within rounding of each other can swap), where umap-learn switches to
  approximate NN-descent above 4,096 points.
- The layout SGD is synchronous: each epoch computes the gradients of all edges due
  in that epoch, and of their negative samples, from the same positions and adds
  them up (scatter-add), where umap-learn updates one edge at a time (Hogwild). It
  makes an epoch a few large tensor operations instead of a Python-free loop over
  edges, which is what a CPU or GPU runs fast from torch.
- Each sampled edge draws exactly `negative_sample_rate` negatives (umap-learn: that
  many on average).
- Spectral initialisation is Chebyshev-filtered subspace iteration on the normalised
  graph operator, all connected components at once (per-component deflation and
  orthonormalisation), instead of Lanczos (eigsh) one component at a time.
  Components are placed at the leading principal components of their feature-space
  centroids, where umap-learn uses a spectral embedding of the centroids.
- Negative samples come from a pool of random indices drawn once per fit and read
  at a random offset each epoch, rather than from a fresh draw per sample.
- transform() gives every new point weight to all of its k neighbours in the
  calibration (umap-learn skips the first one, meant to be the point itself).
- The default of 200 epochs starts at 10,000 points rather than above them (see UMAP).

Same seed and device: bitwise the same embedding, whatever torch's thread count (on
the CPU every chunk of the k-NN search, and everything after it, runs on one thread).
All randomness comes from one torch.Generator seeded with `seed`; sums over edges are
index_add_ or CSR products on the CPU (fixed order there) and
index_put_(accumulate=True) on CUDA (sorted, deterministic), never atomics.

The steps, one module each: neighbors (the exact k-NN search), fuzzy_graph (calibration
and fuzzy union), spectral (the initial layout), layout (the SGD), estimator (UMAP:
fit, transform, state dict); tensors holds their small helpers.
"""
from lib.umap.estimator import UMAP

__all__ = ["UMAP"]  # the package's entry point: from lib.umap import UMAP
