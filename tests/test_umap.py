"""lib.umap (our UMAP on torch) and bench.trustworthiness, on a few hundred points."""
import io

import numpy as np
import pytest
import torch

import lib.umap.neighbors as neighbors_module
from bench.trustworthiness import trustworthiness
from lib.umap import UMAP
from lib.umap.fuzzy_graph import find_ab_params, fuzzy_simplicial_set, fuzzy_union
from lib.umap.neighbors import nearest_neighbors
from lib.umap.spectral import component_labels, spectral_layout


def blobs(sizes, dim, spread, seed):
    """Points around len(sizes) centres uniform in [-spread, spread]^dim, unit noise: (points [n, dim] float32,
    labels)."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(-spread, spread, (len(sizes), dim))
    labels = np.repeat(np.arange(len(sizes)), sizes)
    return (centres[labels] + rng.standard_normal((len(labels), dim))).astype(np.float32), labels


@pytest.fixture(scope="module")
def clusters():
    return blobs([50] * 6, 20, 10.0, seed=0)


@pytest.fixture(scope="module")
def fitted(clusters):
    points, _ = clusters
    model = UMAP(n_neighbors=10, n_epochs=200, seed=0)
    return model, model.fit(points)


def umap_graph(points, k):
    """(rows, cols, weights) of the fuzzy graph of `points` with k neighbours."""
    points = torch.as_tensor(points)
    return fuzzy_simplicial_set(*nearest_neighbors(points, points, k))


def label_agreement(embedding, labels, k=10):
    """Fraction of (point, embedding neighbour) pairs, k per point, in the same cluster."""
    distances = torch.cdist(embedding, embedding).fill_diagonal_(float("inf"))
    neighbours = distances.topk(k, largest=False).indices.numpy()
    return float((labels[neighbours] == labels[:, None]).mean())


def test_separated_clusters_stay_apart(clusters, fitted):
    points, labels = clusters
    _, embedding = fitted
    assert embedding.shape == (300, 2) and embedding.dtype == torch.float32 and embedding.device.type == "cpu"
    assert label_agreement(embedding, labels) > 0.95
    assert trustworthiness(points, embedding.numpy(), k=10) > 0.9


def test_transform_puts_training_points_back_in_place(clusters, fitted):
    points, labels = clusters
    model, embedding = fitted
    placed = model.transform(points[::5])  # [60, 2]
    to_fitted = torch.cdist(placed, embedding)  # [60, 300]
    own = to_fitted[torch.arange(60), torch.arange(0, 300, 5)]
    other_clusters = torch.from_numpy(labels[None, :] != labels[::5, None])
    nearest_other = to_fitted.masked_fill(~other_clusters, float("inf")).amin(dim=1)
    assert bool((own < nearest_other).all())


def test_transform_puts_new_points_with_their_cluster(clusters, fitted):
    points, labels = clusters
    model, embedding = fitted
    rng = np.random.default_rng(1)
    fresh = points[::3] + 0.3 * rng.standard_normal(points[::3].shape).astype(np.float32)
    placed = model.transform(fresh)
    nearest = torch.cdist(placed, embedding).argmin(dim=1).numpy()
    assert (labels[nearest] == labels[::3]).mean() > 0.95


def test_same_seed_is_bitwise_identical_and_another_seed_differs(clusters, fitted):
    points, _ = clusters
    _, embedding = fitted
    again = UMAP(n_neighbors=10, n_epochs=200, seed=0).fit(points)
    other = UMAP(n_neighbors=10, n_epochs=200, seed=1).fit(points)
    assert torch.equal(again, embedding)
    assert (other - embedding).abs().max() > 0.1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_same_seed_is_bitwise_identical(clusters):
    points, labels = clusters
    first = UMAP(n_neighbors=10, n_epochs=200, seed=0, device="cuda").fit(points)
    second = UMAP(n_neighbors=10, n_epochs=200, seed=0, device="cuda").fit(points)
    assert torch.equal(first, second)
    assert label_agreement(first, labels) > 0.95


def test_state_dict_round_trip_gives_the_same_transform(clusters, fitted):
    points, _ = clusters
    model, _ = fitted
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    loaded = UMAP.from_state_dict(torch.load(buffer, weights_only=True))
    queries = points[::7] + 0.1
    assert torch.equal(loaded.transform(queries), model.transform(queries))


def test_state_dict_holds_plain_values(fitted):
    model, _ = fitted
    for key, value in model.state_dict().items():
        assert isinstance(value, (torch.Tensor, int, float, str)), key


def test_connected_manifold_keeps_its_neighbourhoods():
    # A rolled-up sheet in 12-D: one connected component, spectral initialisation of it.
    rng = np.random.default_rng(9)
    turn = rng.uniform(0, 3 * np.pi, 400)
    sheet = np.stack([turn * np.cos(turn), turn * np.sin(turn), rng.uniform(0, 5, 400)], axis=1)
    points = (sheet @ rng.standard_normal((3, 12))).astype(np.float32)
    rows, cols, _ = umap_graph(points, 15)
    assert component_labels(rows, cols, len(points))[1] == 1
    embedding = UMAP(n_epochs=200, seed=0).fit(points)
    assert trustworthiness(points, embedding.numpy(), k=10) > 0.97  # a random map: ~0.5


def test_disconnected_graph_with_tiny_components():
    # 5 clusters of 40 and 3 of 4 points, far apart: with 4 neighbours each cluster is
    # its own component, the small ones too small for a spectral layout.
    points, labels = blobs([40] * 5 + [4] * 3, 16, 1000.0, seed=2)
    rows, cols, _ = umap_graph(points, 4)
    _, count = component_labels(rows, cols, len(points))
    assert count >= 8
    embedding = UMAP(n_neighbors=4, n_epochs=200, seed=0).fit(points)
    assert bool(torch.isfinite(embedding).all())
    big = labels < 5
    assert label_agreement(embedding[big], labels[big], k=5) > 0.95


def test_twenty_separated_clusters():
    points, labels = blobs([15] * 20, 32, 50.0, seed=3)
    embedding = UMAP(n_neighbors=8, seed=0).fit(points)
    assert label_agreement(embedding, labels, k=5) > 0.95


def test_random_init_keeps_clusters_apart(clusters):
    points, labels = clusters
    embedding = UMAP(n_neighbors=10, n_epochs=200, init="random", seed=0).fit(points)
    assert label_agreement(embedding, labels) > 0.95


def test_thread_count_changes_nothing(clusters, fitted):
    points, _ = clusters
    _, embedding = fitted
    before = torch.get_num_threads()
    torch.set_num_threads(1 if before > 1 else 2)
    try:
        assert torch.equal(UMAP(n_neighbors=10, n_epochs=200, seed=0).fit(points), embedding)
    finally:
        torch.set_num_threads(before)


def test_fit_and_transform_leave_the_thread_count_as_they_found_it(clusters, fitted):
    points, _ = clusters
    model, _ = fitted
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        model.transform(points[:10])
        assert torch.get_num_threads() == 2
        UMAP(n_neighbors=10, n_epochs=20).fit(points)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_unknown_init_is_refused():
    with pytest.raises(ValueError, match="init"):
        UMAP(init="pca")


def test_fewer_points_than_neighbours():
    points = torch.randn(5, 3, generator=torch.Generator().manual_seed(10))
    model = UMAP(n_neighbors=15, n_epochs=50)
    assert bool(torch.isfinite(model.fit(points)).all()) and model.transform(points[:2]).shape == (2, 2)
    with pytest.raises(ValueError, match="at least 2 points"):
        UMAP().fit(points[:1])


def test_spectral_layout_orders_points_along_a_curve():
    # Points along a 1-D curve in 10-D: the leading eigenvector is monotone along it.
    position = np.linspace(0, 1, 300)
    rng = np.random.default_rng(4)
    basis = rng.standard_normal((2, 10))
    points = np.stack([np.cos(3 * position), np.sin(3 * position)], axis=1) @ basis
    points = torch.from_numpy(points + 0.001 * rng.standard_normal(points.shape)).float()
    rows, cols, weights = umap_graph(points, 10)
    layout = spectral_layout(points, rows, cols, weights, 2, torch.Generator().manual_seed(0))
    ranks = np.argsort(np.argsort(layout[:, 0].numpy()))
    spearman = np.corrcoef(ranks, np.arange(300))[0, 1]
    assert abs(spearman) > 0.99


@pytest.mark.parametrize("chunk_elements", [1 << 23, 5000])  # one chunk; many, of both searches
def test_nearest_neighbors_is_exact(monkeypatch, chunk_elements):
    monkeypatch.setattr(neighbors_module, "CHUNK_ELEMENTS", chunk_elements)
    generator = torch.Generator().manual_seed(5)
    points = torch.randn(700, 12, generator=generator)
    points[1] = points[0]  # a duplicate: both at distance 0 from each
    queries = torch.cat([points[:50], torch.randn(30, 12, generator=generator)])
    distances, indices = nearest_neighbors(queries, points, 15)
    exact = torch.cdist(queries.double(), points.double())
    expected, expected_indices = exact.topk(15, largest=False)
    assert torch.allclose(distances.double(), expected, atol=1e-4)
    assert torch.equal(indices.sort(dim=1).values[2:], expected_indices.sort(dim=1).values[2:])
    assert set(indices[0, :2].tolist()) == {0, 1} and distances[0, 1] == 0


def test_fuzzy_union_matches_the_dense_formula():
    generator = torch.Generator().manual_seed(6)
    n = 40
    dense = torch.rand(n, n, generator=generator) * (torch.rand(n, n, generator=generator) < 0.2)
    dense.fill_diagonal_(0)
    rows, cols = dense.nonzero().T
    union_rows, union_cols, union_weights = fuzzy_union(rows, cols, dense[rows, cols], n)
    result = torch.zeros(n, n)
    result[union_rows, union_cols] = union_weights
    assert torch.allclose(result, dense + dense.T - dense * dense.T)
    keys = union_rows * n + union_cols
    assert bool((keys[1:] > keys[:-1]).all())  # sorted, no repeats


@pytest.mark.parametrize("spread, min_dist", [(1.0, 0.1), (1.0, 0.0), (1.0, 0.5), (2.0, 0.3), (0.5, 0.05)])
def test_ab_params_match_umap_learns_curve_fit(spread, min_dist):
    from scipy.optimize import curve_fit

    # umap-learn 0.5's find_ab_params
    x = np.linspace(0, spread * 3, 300)
    y = np.where(x < min_dist, 1.0, np.exp(-(x - min_dist) / spread))
    expected, _ = curve_fit(lambda x, a, b: 1.0 / (1.0 + a * x ** (2 * b)), x, y)
    assert find_ab_params(spread, min_dist) == pytest.approx(tuple(expected), rel=1e-4)
    if (spread, min_dist) == (1.0, 0.1):
        assert expected == pytest.approx([1.5769, 0.8951], abs=1e-4)  # umap-learn's familiar values


# ---------------------------------------------------------------------------------
# Trustworthiness.
# ---------------------------------------------------------------------------------


def brute_force_trustworthiness(high, low, k):
    """sklearn's formulation: full rank matrix from argsort, the point itself ranked last."""
    n = len(high)
    d_high = ((high[:, None, :] - high[None, :, :]) ** 2).sum(axis=2)
    d_low = ((low[:, None, :] - low[None, :, :]) ** 2).sum(axis=2)
    np.fill_diagonal(d_high, np.inf)
    np.fill_diagonal(d_low, np.inf)
    rank = np.empty((n, n), dtype=int)
    rank[np.arange(n)[:, None], np.argsort(d_high, axis=1, kind="stable")] = np.arange(1, n + 1)
    neighbours = np.argsort(d_low, axis=1, kind="stable")[:, :k]
    penalty = np.maximum(rank[np.arange(n)[:, None], neighbours] - k, 0).sum()
    return 1 - 2 * penalty / (n * k * (2 * n - 3 * k - 1))


@pytest.mark.parametrize("n, k", [(30, 1), (60, 5), (201, 10)])
def test_trustworthiness_matches_brute_force(n, k):
    rng = np.random.default_rng(n)
    high = rng.standard_normal((n, 8))
    for low in (rng.standard_normal((n, 2)), high[:, :2]):  # random: ~0.5; a projection: in between
        assert trustworthiness(high, low, k) == pytest.approx(brute_force_trustworthiness(high, low, k), abs=1e-12)
    assert trustworthiness(high, rng.standard_normal((n, 2)), k) < 0.8


def test_trustworthiness_of_the_identity_is_one():
    high = np.random.default_rng(7).standard_normal((120, 5))
    assert trustworthiness(high, high, 10) == 1.0


def test_trustworthiness_chunks_give_the_same_value(monkeypatch):
    import bench.trustworthiness as module

    rng = np.random.default_rng(8)
    high, low = rng.standard_normal((150, 6)), rng.standard_normal((150, 2))
    whole = trustworthiness(high, low, 7)
    monkeypatch.setattr(module, "CHUNK_ELEMENTS", 150 * 8 * 3)  # 3 rows a chunk
    assert trustworthiness(high, low, 7) == whole
