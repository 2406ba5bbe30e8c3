import torch

from hashkit.hashing.methods import get_method


def test_loss_by_hand():
    method = get_method("bcdh")
    method.margin, method.quantization_weight = 2.0, 0.5
    outputs = torch.tensor([[1.0, 1.0], [1.0, -1.0], [0.5, 1.0]])
    pairs = torch.tensor([[0, 1], [0, 1], [0, 2]])
    similar = torch.tensor([1.0, 0.0, 1.0])
    # distances /bits: (0,1) -> 4/2 = 2; (0,2) -> 0.25/2 = 0.125
    # pull: 2 (positive 0-1), push: max(0, 2 - 2) = 0, pull: 0.125 -> mean 2.125 / 3
    # quantization: rows 0,1 exact; row 2: (0.5 - 1)^2 / 2 = 0.125 -> mean 0.125 / 3
    expected = 2.125 / 3 + 0.5 * 0.125 / 3
    assert torch.isclose(method.loss(outputs, pairs, similar), torch.tensor(expected))


def test_gradient_pulls_positives_and_pushes_negatives():
    method = get_method("bcdh")
    outputs = torch.tensor([[0.9, 0.2, -0.4, 0.7], [0.1, -0.3, 0.6, 0.8]], requires_grad=True)
    pairs = torch.tensor([[0, 1]])

    def distance_after_step(similar: float) -> float:
        x = outputs.detach().clone().requires_grad_(True)
        method.loss(x, pairs, torch.tensor([similar])).backward()
        moved = x.detach() - 0.1 * x.grad
        return float((moved[0] - moved[1]).pow(2).sum())

    before = float((outputs[0] - outputs[1]).detach().pow(2).sum())
    assert distance_after_step(1.0) < before
    assert distance_after_step(0.0) > before
