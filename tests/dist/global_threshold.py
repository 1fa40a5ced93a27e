"""Run under torchrun: each rank holds half of a fixed score matrix; write its global-batch mask."""

import sys

import torch
from accelerate import Accelerator

from videoktr.rl.counterfactuals import global_batch_mask

acc = Accelerator(cpu=True)
g = torch.Generator().manual_seed(0)
scores = torch.rand(8, 12, generator=g)
valid = torch.arange(12).expand(8, 12) < torch.randint(3, 13, (8, 1), generator=g)
rows = slice(4 * acc.process_index, 4 * acc.process_index + 4)
mask = global_batch_mask(acc, scores[rows], valid[rows], 0.2)
torch.save(mask, f"{sys.argv[1]}/mask{acc.process_index}.pt")
# close the group before exit: left open, its destructor can abort the process at shutdown
torch.distributed.destroy_process_group()
