"""The tiny-network check every zoo model's test runs: two optimizer steps with a scheduled-sampling mask (finite
gradients on every parameter, the loss moves), then ``predict`` equal to the pure rollout of ``forward``."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def check_trains_and_predicts(net: torch.nn.Module, cfg, size: int = 16) -> None:
    x = torch.rand(2, cfg.total_frames, 1, size, size)
    mask = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    losses = []
    for _ in range(2):
        opt.zero_grad()
        out = net(x, mask)
        assert out.shape == (2, cfg.total_frames - 1, 1, size, size)
        loss = F.mse_loss(out, x[:, 1:])
        loss.backward()
        for key, p in net.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), key
        opt.step()
        losses.append(loss.item())
    assert losses[1] != losses[0]
    net.eval()
    fut = net.predict(x[:, : cfg.input_frames], cfg.output_frames)
    assert fut.shape == (2, cfg.output_frames, 1, size, size) and torch.isfinite(fut).all()
    with torch.no_grad():
        torch.testing.assert_close(fut, net(x)[:, cfg.input_frames - 1:])
