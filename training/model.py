"""The character LSTM language model and its one configuration object."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class ModelConfig:
    vocab_size: int = 0  # set from the tokenizer
    embed_dim: int = 64  # characters need few dimensions; the LSTM does the work
    # 1x256 serves several times faster than 1x512, learns faster in the first minutes and is
    # barely behind after 5 (bench/bpc.py and bench/scaling.py measure both).
    hidden_size: int = 256
    num_layers: int = 1  # a second layer gave no gain in that budget and doubles latency
    dropout: float = 0.1  # on the LSTM output; small corpora overfit within minutes


class CharLSTM(nn.Module):
    """ids [B,T] + state -> next-character logits [B,T,V] + state.

    The forward signature is exactly the ONNX graph's, so the exported model and this one are
    called the same way (the parity check relies on it)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if config.vocab_size < 2:
            raise ValueError("ModelConfig.vocab_size must be set from the tokenizer")
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.embed_dim)
        self.lstm = nn.LSTM(
            config.embed_dim, config.hidden_size, config.num_layers, batch_first=True
        )
        self.drop = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.hidden_size, config.vocab_size)

    def initial_state(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (self.config.num_layers, batch, self.config.hidden_size)
        return torch.zeros(shape), torch.zeros(shape)

    def forward(
        self, ids: torch.Tensor, h: torch.Tensor, c: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.embed(ids)  # [B,T,E]
        y, (h, c) = self.lstm(x, (h, c))  # y [B,T,H]; h, c [L,B,H]
        logits = self.head(self.drop(y))  # [B,T,V]
        return logits, h, c

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())
