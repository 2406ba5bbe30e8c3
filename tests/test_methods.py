"""Method pieces against hand-computed cases and their defining properties."""

import numpy as np
import pytest
import torch

from hashkit.hashing.files.pairs_file import Pairs
from hashkit.hashing.methods import Batch, TrainingData, get_method
from hashkit.hashing.methods.dsah import initial_similarity, pic_weights, refine_similarity
from hashkit.hashing.methods.pair_mining import hard_negatives, mutual_pairs, neighbour_sets
from hashkit.hashing.training.train import loss_warnings


def bcdh_with_codes(codes, margin=2.0, mu=0.5):
    method = get_method("bcdh", margin=margin, quantization_weight=mu)
    method.codes = np.asarray(codes, dtype=float)
    return method


def test_bcdh_loss_by_hand():
    method = bcdh_with_codes([[1, 1], [1, -1], [1, 1]])
    outputs = torch.tensor([[1.0, 1.0], [1.0, -1.0], [0.5, 1.0]])
    batch = Batch(np.array([0, 1, 2]), {"pairs": torch.tensor([[0, 1], [0, 1], [0, 2]]),
                                        "similar": torch.tensor([1.0, 0.0, 1.0]),
                                        "weights": torch.tensor([1.0, 1.0, 0.5])})
    # d/K: (0,1) -> 4/2 = 2; (0,2) -> 0.25/2 = 0.125
    # positive (0,1): 1 * 2; negative (0,1): max(0, 2 - 2) = 0; positive (0,2): 0.5 * 0.125 -> sum 2.0625
    # quantization to B: rows 0, 1 exact; row 2: (0.5 - 1)^2 / 2 = 0.125 -> mean 0.125 / 3
    expected = 2.0625 / 3 + 0.5 * 0.125 / 3
    assert float(method.loss({"codes": outputs}, batch)) == pytest.approx(expected)


def test_bcdh_gradient_pulls_positives_and_pushes_negatives():
    method = bcdh_with_codes(np.ones((2, 4)), mu=0.0)
    start = torch.tensor([[0.9, 0.2, -0.4, 0.7], [0.1, -0.3, 0.6, 0.8]])

    def distance_after_step(similar: float) -> float:
        x = start.clone().requires_grad_(True)
        batch = Batch(np.array([0, 1]), {"pairs": torch.tensor([[0, 1]]), "similar": torch.tensor([similar]),
                                         "weights": torch.tensor([1.0])})
        method.loss({"codes": x}, batch).backward()
        moved = x.detach() - 0.1 * x.grad
        return float((moved[0] - moved[1]).pow(2).sum())

    before = float((start[0] - start[1]).pow(2).sum())
    assert distance_after_step(1.0) < before < distance_after_step(0.0)


def objective(method, codes, outputs):
    pairs, similar, weights = method._pairs()
    d = ((codes[pairs[:, 0]] - codes[pairs[:, 1]]) ** 2).sum(1) / codes.shape[1]
    pair = np.where(similar == 1, weights * d, np.maximum(method.margin - d, 0)).sum()
    return pair + method.quantization_weight * ((codes - outputs) ** 2).sum() / codes.shape[1]


def test_bcdh_binary_step_lowers_its_objective_and_stays_binary():
    rng = np.random.default_rng(0)
    n, bits = 40, 16
    model_id = np.repeat(np.arange(4), 10).astype(np.int32)
    positives = np.array([(i, j) for i in range(n) for j in range(i + 1, n) if model_id[i] == model_id[j]][::3])
    pairs = Pairs(photo_root=None, images=[str(i) for i in range(n)], model_id=model_id, positives=positives,
                  shared_points=np.full(len(positives), 30), negatives=np.array([[0, 10], [5, 25], [12, 33]]))
    method = get_method("bcdh", negatives="hard", negatives_per_image=3)
    method.setup(TrainingData([None] * n, pairs=pairs), bits, seed=0)
    outputs = rng.standard_normal((n, bits))
    method.start_epoch(0, 3, lambda: outputs)
    before = objective(method, method.codes, outputs)
    method.codes = method.binary_step(outputs)
    assert set(np.unique(method.codes)) <= {-1.0, 1.0}
    assert objective(method, method.codes, outputs) < before


def test_hard_negatives_are_nearest_eligible_and_one_per_group():
    codes = np.array([[0.0], [0.1], [0.2], [5.0], [5.1], [9.0]])
    groups = np.array([0, 1, 1, 2, 2, 3])
    eligible = lambda rows: groups[rows, None] != groups[None, :]  # noqa: E731
    found = hard_negatives(codes, np.array([0]), eligible, per_anchor=2, groups=groups)
    assert found.tolist() == [[0, 1], [0, 3]]  # nearest of group 1, then nearest of group 2
    without_groups = hard_negatives(codes, np.array([0]), eligible, per_anchor=2)
    assert without_groups.tolist() == [[0, 1], [0, 2]]


def test_mutual_neighbour_pairs():
    features = np.array([[1, 0], [0.99, 0.1], [0, 1], [0.1, 0.99], [-1, 0.05]], float)
    assert mutual_pairs(neighbour_sets(features, k=1)).tolist() == [[0, 1], [2, 3]]


def test_itq_rotation_reduces_quantization_error_below_pca():
    rng = np.random.default_rng(1)
    features = rng.standard_normal((300, 20)) @ rng.standard_normal((20, 20))
    itq = get_method("itq")
    weight, bias = itq.fit(features, 8, seed=0)
    projected = features @ weight.T + bias
    error = np.abs(np.sign(projected) - projected / np.abs(projected).mean()).mean()
    zero_iterations = get_method("itq", iterations=0)
    w0, b0 = zero_iterations.fit(features, 8, seed=0)
    p0 = features @ w0.T + b0
    error0 = np.abs(np.sign(p0) - p0 / np.abs(p0).mean()).mean()
    assert error < error0
    gram = weight @ weight.T  # rows stay orthonormal directions (rotated principal axes)
    assert np.allclose(gram, np.eye(8), atol=1e-4)


def test_dsah_initial_similarity_by_hand():
    features = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]], float)
    similarity = initial_similarity(features, k=1, shared_fraction=1.0)
    expected = np.array([[1, 1, -1, -1], [1, 1, -1, -1], [-1, -1, 1, 1], [-1, -1, 1, 1]])
    assert np.array_equal(similarity, expected)


def test_dsah_refinement_uses_statistics_of_similar_pairs():
    codes = np.array([[1, 1, 1, 1], [1, 1, 1, 0.8], [1, 1, -1, -1], [-1, -1, 1, 1]], float)
    similarity = np.array([[1, 1, -1, -1], [1, 1, -1, -1], [-1, -1, 1, -1], [-1, -1, -1, 1]], np.int8)
    refined = refine_similarity(similarity, codes, spread=0.0)  # threshold = cos(0, 1)
    assert refined[0, 1] == 1 and refined[0, 2] == -1 and refined[2, 3] == -1
    assert np.array_equal(refined, refined.T) and np.all(np.diag(refined) == 1)


def test_dsah_refinement_only_adds_confident_neighbours():
    codes = np.array([[1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 1, 0.9], [-1, -1, -1, -1]], float)
    similarity = np.array([[1, 1, -1, 1], [1, 1, -1, -1], [-1, -1, 1, -1], [1, -1, -1, 1]], np.int8)
    refined = refine_similarity(similarity, codes, spread=0.0)  # threshold: mean cos of (0,1), (0,3) = 0
    assert refined[0, 3] == 1  # similar before, opposite codes now: kept
    assert refined[0, 2] == 1 and refined[1, 2] == 1  # near-identical codes: added
    assert refined[1, 3] == -1 and refined[2, 3] == -1


def test_pic_weights_favour_dissimilar_pairs_and_average_one():
    similarity = torch.tensor([[1.0, 0.8, -0.5], [0.8, 1.0, 0.0], [-0.5, 0.0, 1.0]])
    for variant in ("row", "batch"):
        weights = pic_weights(similarity, variant, temperature=0.5)
        assert float(weights.mean()) == pytest.approx(1.0)
        assert weights[0, 2] > weights[0, 1] > weights[0, 0]
    assert torch.all(pic_weights(similarity, "none", 0.5) == 1)


def test_loss_warnings_flag_jumps_and_non_finite_losses():
    assert loss_warnings([0.7, 0.5, 0.49]) == []
    assert loss_warnings([0.0, 0.05]) == []  # doubled, but by less than 0.1
    jumped = loss_warnings([0.3, 0.0, 1.9988, 1.5])
    assert len(jumped) == 1 and jumped[0].startswith("epoch 3: loss jumped from 0.0000 to 1.9988")
    assert loss_warnings([0.5, float("nan")])[0].startswith("epoch 2: loss is nan")


def test_learned_whitening_whitens_positive_differences_and_orders_negative_ones():
    from hashkit.hashing.methods.bcdh import learned_whitening
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 6)) @ rng.standard_normal((6, 6))
    positives = rng.integers(0, 200, (300, 2))
    negatives = rng.integers(0, 200, (400, 2))
    projection = learned_whitening(x, positives, negatives, shrinkage=0.0)
    within = (x[positives[:, 0]] - x[positives[:, 1]]) @ projection.T
    assert np.allclose(within.T @ within / len(within), np.eye(6), atol=1e-8)
    between = (x[negatives[:, 0]] - x[negatives[:, 1]]) @ projection.T
    covariance = between.T @ between / len(between)
    assert np.allclose(covariance, np.diag(np.diag(covariance)), atol=1e-8)
    assert np.all(np.diff(np.diag(covariance)) <= 1e-12), "directions of most negative spread first"


def test_bcdh_starts_from_the_closed_form_codes():
    """The hash layer starts as a scaled rotation of the top closed-form directions of the head's
    unit-length descriptors (principal ones for init itq), with outputs averaging +-1."""
    from hashkit.hashing.methods.bcdh import learned_whitening, pooled_descriptors
    rng = np.random.default_rng(1)
    features = np.abs(rng.standard_normal((60, 32))).astype(np.float32)
    model_id = np.repeat(np.arange(3), 20).astype(np.int32)
    positives = np.array([(i, i + 1) for i in range(0, 59) if model_id[i] == model_id[i + 1]])
    pairs = Pairs(photo_root=None, images=[f"{i}.jpg" for i in range(60)], model_id=model_id, positives=positives,
                  shared_points=np.full(len(positives), 30), negatives=np.array([[0, 30], [5, 45], [25, 50]]))
    data = TrainingData([None] * 60, features=features, pairs=pairs)
    descriptors = pooled_descriptors(features, 1.0).astype(np.float64)
    for init in ("itq", "whitened-itq"):
        method = get_method("bcdh", init=init, pooling="average")
        method.setup(data, 8, seed=0)
        head = method.build_head(32, 8, 0, 0)
        method.init_head(head, data)
        outputs = head(torch.from_numpy(features)).detach().numpy()
        assert abs(np.abs(outputs).mean() - 1) < 1e-4
        top = (np.linalg.svd(descriptors - descriptors.mean(axis=0), full_matrices=False)[2][:8] if init == "itq"
               else learned_whitening(descriptors, method.positives, method.random_negatives, method.shrinkage)[:8])
        weight = head.hash_layer.weight.detach().numpy().astype(np.float64)
        rotation = weight @ np.linalg.pinv(top)  # (8, 8): a multiple of an orthogonal matrix
        assert np.allclose(weight, rotation @ top, atol=1e-4), "rows lie in the span of the top directions"
        gram = rotation @ rotation.T
        assert np.allclose(gram, gram[0, 0] * np.eye(8), atol=1e-3 * gram[0, 0])


@pytest.mark.parametrize("with_pairs", [True, False])
def test_bcdh_without_negatives_says_what_its_source_of_pairs_lacks(with_pairs):
    """Two photos of one model, or two images without --pairs (each the other's neighbour): no negative."""
    from hashkit.hashing.errors import UserError
    features = np.abs(np.random.default_rng(0).standard_normal((2, 32))).astype(np.float32)
    pairs = Pairs(photo_root=None, images=["0.jpg", "1.jpg"], model_id=np.zeros(2, np.int32),
                  positives=np.array([[0, 1]]), shared_points=np.array([30]), negatives=np.zeros((0, 2), np.int64))
    data = TrainingData([None] * 2, features=features, pairs=pairs if with_pairs else None)
    with pytest.raises(UserError, match="0 negative pairs") as error:
        get_method("bcdh").setup(data, 16, seed=0)
    assert ("3D models" in str(error.value)) == with_pairs, str(error.value)


def test_bcdh_with_fewer_images_than_bits_starts_what_pca_allows():
    """10 images have 9 principal directions: 9 of 16 bits start from ITQ, the other 7 stay random."""
    from hashkit.hashing.methods.bcdh import pooled_descriptors
    features = np.abs(np.random.default_rng(2).standard_normal((10, 32))).astype(np.float32)
    pairs = Pairs(photo_root=None, images=[f"{i}.jpg" for i in range(10)],
                  model_id=np.repeat([0, 1], 5).astype(np.int32), positives=np.array([[0, 1], [5, 6]]),
                  shared_points=np.array([30, 30]), negatives=np.array([[0, 5]]))
    data = TrainingData([None] * 10, features=features, pairs=pairs)
    method = get_method("bcdh", pooling="average")
    method.setup(data, 16, seed=0)
    head = method.build_head(32, 16, 0, 0)
    before = head.hash_layer.weight.detach().clone()
    method.init_head(head, data)
    weight = head.hash_layer.weight.detach()
    assert torch.equal(weight[9:], before[9:]), "bits beyond the principal directions keep their random start"
    descriptors = pooled_descriptors(features, 1.0).astype(np.float64)
    top = np.linalg.svd(descriptors - descriptors.mean(axis=0), full_matrices=False)[2][:9]
    fitted = weight[:9].numpy().astype(np.float64)
    assert np.allclose(fitted, fitted @ np.linalg.pinv(top) @ top, atol=1e-4), "ITQ rows in the principal span"
    outputs = head(torch.from_numpy(features)).detach().numpy()[:, :9]
    assert abs(np.abs(outputs).mean() - 1) < 1e-4
