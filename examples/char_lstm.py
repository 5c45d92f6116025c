"""A character-level LSTM language model on the Python documentation's help topics (in the standard library).

python examples/char_lstm.py         # a few minutes on 2 cores; prints generated text
"""

import deepkern as dk
import numpy as np
from deepkern import nn, optim
from deepkern.data import DataLoader, char_corpus

dk.manual_seed(0)
corpus = char_corpus(seq_len=64)
loader = DataLoader(corpus.train, batch_size=32, shuffle=True, drop_last=True, seed=0)


class CharLM(nn.Module):
    def __init__(self, vocab, embed=48, hidden=256):
        super().__init__()
        self.embed = nn.Embedding(vocab, embed)
        self.lstm = nn.LSTM(embed, hidden, batch_first=True)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, ids, state=None):
        out, state = self.lstm(self.embed(ids), state)
        return self.head(out), state


model = CharLM(corpus.vocab_size)
opt = optim.Adam(model.parameters(), lr=4e-3)
loss_fn = nn.CrossEntropyLoss()
print(f"unigram entropy of the corpus: {corpus.unigram_entropy():.3f} nats/char")

for epoch in range(2):
    for step, (ids, targets) in enumerate(loader):
        opt.zero_grad()
        logits, _ = model(ids)
        loss = loss_fn(logits.reshape(-1, corpus.vocab_size), targets.reshape(-1))
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 50 == 0:
            print(f"epoch {epoch + 1} step {step}: loss {loss.item():.3f} nats/char")

# Generate: feed one character at a time, carrying the LSTM state.
model.eval()
rng = np.random.default_rng(0)
text = "The "
with dk.no_grad():
    logits, state = model(dk.tensor(corpus.encode(text)[None]))
    for _ in range(300):
        p = np.exp(logits.numpy()[0, -1].astype(np.float64) / 0.8)
        nxt = rng.choice(len(p), p=p / p.sum())
        text += corpus.vocab[nxt]
        logits, state = model(dk.tensor([[nxt]]), state)
print(text)
