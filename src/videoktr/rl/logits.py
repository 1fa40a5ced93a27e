"""Next-token log-probs at the sampling temperature, in float32; from hidden states a chunk of positions at a time,
so [B, n, V] logits are never held."""

from __future__ import annotations

from collections.abc import Iterator

import torch


def tempered_log_softmax(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """log-softmax of logits / temperature over the vocabulary, in float32 (as TRL's fused head scores tokens)."""
    return (logits.float() / temperature).log_softmax(-1)


def entropy(logp: torch.Tensor) -> torch.Tensor:
    return -(logp.exp() * logp).sum(-1)


def chunks(n: int, chunk: int) -> Iterator[slice]:
    for start in range(0, n, chunk):
        yield slice(start, min(start + chunk, n))


def head_log_softmax(head: torch.nn.Module, hidden: torch.Tensor, temperature: float) -> torch.Tensor:
    """Log-probs [..., V] of hidden states [..., D] through the LM head."""
    return tempered_log_softmax(head(hidden.to(head.weight.dtype)), temperature)


def chunked_log_softmax(head: torch.nn.Module, hidden: torch.Tensor, temperature: float,
                        chunk: int) -> Iterator[tuple[slice, torch.Tensor]]:
    """(positions, log-probs [B, c, V]) of hidden states [B, n, D], `chunk` positions at a time."""
    for sl in chunks(hidden.size(1), chunk):
        yield sl, head_log_softmax(head, hidden[:, sl], temperature)


def token_logprobs(head: torch.nn.Module, hidden: torch.Tensor, targets: torch.Tensor, temperature: float,
                   chunk: int) -> torch.Tensor:
    """log p(target) [B, n] for hidden states [B, n, D] predicting `targets` [B, n]."""
    return torch.cat([logq.gather(-1, targets[:, sl, None])[..., 0]
                      for sl, logq in chunked_log_softmax(head, hidden, temperature, chunk)], 1)
