"""k-means, the start of every EM run (pyro_genmodels.models.kmeans): the partition of
well-separated clusters is found exactly, also when there are more clusters than the
subset's row budget."""

import torch
from sklearn.metrics import adjusted_rand_score

from pyro_genmodels.models.kmeans import KMEANS_ROWS_PER_CLUSTER, kmeans


def _blobs(k: int, per: int, seed: int = 0):
    """``k`` clusters of ``per`` rows each, centres 100 sds apart on a 2-D grid."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.stack(torch.meshgrid(torch.arange(k) * 100.0, torch.zeros(1),
                                         indexing="ij"), -1).reshape(k, 2)
    labels = torch.arange(k).repeat_interleave(per)
    return centres[labels] + torch.randn(k * per, 2, generator=g), labels


def test_well_separated_clusters_are_found_exactly():
    x, labels = _blobs(6, 40)
    torch.manual_seed(0)
    assign = kmeans(x, 6)
    assert adjusted_rand_score(labels.numpy(), assign.numpy()) == 1.0


def test_more_clusters_than_the_row_budget_widens_the_subset():
    """With ``max_rows=8`` and 12 clusters the subset would hold fewer rows than clusters,
    leaving some empty; it takes 16 rows per cluster instead and finds all 12."""
    x, labels = _blobs(12, 3 * KMEANS_ROWS_PER_CLUSTER)
    torch.manual_seed(0)
    assign = kmeans(x, 12, max_rows=8)
    assert len(assign.unique()) == 12
    assert adjusted_rand_score(labels.numpy(), assign.numpy()) == 1.0
