"""Next-token log-probs at the sampling temperature, in float32; from hidden states a chunk of positions at a time,
so [B, n, V] logits are never held.

The LM head is applied as a function (`gathered_head`), its weight gathered once per pass: under DeepSpeed ZeRO-3
each call of a partitioned module is a collective (an all-gather of its weight), and TRL pads completions to each
rank's own longest one, so a rank with longer completions would make more head calls than the others and the ranks'
collectives would no longer match (a hang, or gloo's "collective mismatch"). One gather per pass, the same on
every rank, whatever its completion length."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext

import torch

Head = Callable[[torch.Tensor], torch.Tensor]  # hidden states [..., D] -> logits [..., V]


def tempered_log_softmax(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """log-softmax of logits / temperature over the vocabulary, in float32 (as TRL's fused head scores tokens)."""
    return (logits.float() / temperature).log_softmax(-1)


def entropy(logp: torch.Tensor) -> torch.Tensor:
    return -(logp.exp() * logp).sum(-1)


def chunks(n: int, chunk: int) -> Iterator[slice]:
    for start in range(0, n, chunk):
        yield slice(start, min(start + chunk, n))


def is_partitioned(module: torch.nn.Module) -> bool:
    """Whether DeepSpeed ZeRO-3 partitions the module's parameters (they carry a `ds_id`)."""
    return any(hasattr(p, "ds_id") for p in module.parameters())


@contextmanager
def gathered_head(head: torch.nn.Module) -> Iterator[Head]:
    """The LM head as a function of hidden states, valid inside the block: under ZeRO-3 its weight is gathered once
    on entry (a collective every rank makes once) and released on exit; the module itself is never called, so its
    hooks fetch nothing per call. Gradients flow to the weight as through the module."""
    if is_partitioned(head):
        import deepspeed

        ctx = deepspeed.zero.GatheredParameters(list(head.parameters()), modifier_rank=None)
    else:
        ctx = nullcontext()
    with ctx:
        weight, bias = head.weight, getattr(head, "bias", None)
        yield lambda hidden: torch.nn.functional.linear(hidden.to(weight.dtype), weight, bias)


def head_log_softmax(head: Head, hidden: torch.Tensor, temperature: float) -> torch.Tensor:
    """Log-probs [..., V] of hidden states [..., D] through the LM head function (`gathered_head`)."""
    return tempered_log_softmax(head(hidden), temperature)


def chunked_log_softmax(head: Head, hidden: torch.Tensor, temperature: float,
                        chunk: int) -> Iterator[tuple[slice, torch.Tensor]]:
    """(positions, log-probs [B, c, V]) of hidden states [B, n, D], `chunk` positions at a time."""
    for sl in chunks(hidden.size(1), chunk):
        yield sl, head_log_softmax(head, hidden[:, sl], temperature)


def token_logprobs(head: Head, hidden: torch.Tensor, targets: torch.Tensor, temperature: float,
                   chunk: int) -> torch.Tensor:
    """log p(target) [B, n] for hidden states [B, n, D] predicting `targets` [B, n]."""
    return torch.cat([logq.gather(-1, targets[:, sl, None])[..., 0]
                      for sl, logq in chunked_log_softmax(head, hidden, temperature, chunk)], 1)
