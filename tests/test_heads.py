"""Classification heads: shapes, exact parameter counts, the seed's MLP layout, and that they learn."""
import torch
from torch import nn

from helpers.models.heads import LinearHead, MLPHead


def test_linear_head_shape_and_count():
    head = LinearHead(512, 7000, dropout=0.5)
    assert head(torch.randn(4, 512)).shape == (4, 7000)
    assert sum(p.numel() for p in head.parameters()) == 512 * 7000 + 7000
    assert head.dropout.p == 0.5


def test_mlp_head_is_the_seed_layout():
    head = MLPHead(512, 7000, hidden=[1024, 512], dropout=0.5)
    kinds = [type(m) for m in head.hidden]
    assert kinds == [nn.Linear, nn.LeakyReLU, nn.Dropout] * 2
    assert [m.p for m in head.hidden if isinstance(m, nn.Dropout)] == [0.5, 0.5]
    expected = (512 * 1024 + 1024) + (1024 * 512 + 512) + (512 * 7000 + 7000)
    assert sum(p.numel() for p in head.parameters()) == expected
    assert head(torch.randn(3, 512)).shape == (3, 7000)


def test_mlp_head_without_hidden_layers_is_linear():
    head = MLPHead(16, 4, hidden=[])
    assert len(head.hidden) == 0
    assert sum(p.numel() for p in head.parameters()) == 16 * 4 + 4


def test_dropout_only_in_training():
    head = MLPHead(32, 5, hidden=[64], dropout=0.5).eval()
    x = torch.randn(8, 32)
    assert torch.equal(head(x), head(x))
    head.train()
    torch.manual_seed(0)
    assert not torch.equal(head(x), head(x))


def test_mlp_head_learns_a_nonlinear_problem():
    torch.manual_seed(0)
    x = torch.randn(512, 2)
    y = ((x[:, 0] * x[:, 1]) > 0).long()  # XOR of the signs: not linearly separable
    head = MLPHead(2, 2, hidden=[32, 32], dropout=0.0)
    linear = LinearHead(2, 2)
    for model in (head, linear):
        opt = torch.optim.Adam(model.parameters(), lr=3e-2)
        for _ in range(150):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    x_test = torch.randn(512, 2)
    y_test = ((x_test[:, 0] * x_test[:, 1]) > 0).long()
    mlp_acc = (head.eval()(x_test).argmax(1) == y_test).float().mean().item()
    linear_acc = (linear(x_test).argmax(1) == y_test).float().mean().item()
    assert mlp_acc > 0.9
    assert linear_acc < 0.7
