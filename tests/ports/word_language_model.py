"""Port of PyTorch's word-level language model example (examples/word_language_model: data.py,
model.py and main.py's train/evaluate loops, in the form whose decoder output goes to
CrossEntropyLoss), written once against the ``torch`` namespace it is
given: PyTorch itself or deepkern. Embedding -> dropout -> RNN -> dropout -> Linear decoder (weights
optionally tied), batchify/get_batch, hidden-state repackaging, gradient clipping and the manual
SGD update ``p.data.add_(p.grad, alpha=-lr)``; and the Transformer variant: embedding scaled by
sqrt(ninp), sinusoidal positional encoding, a causal TransformerEncoder, a Linear decoder and
log_softmax into NLLLoss."""

import math


def corpus(torch, lines):
    """data.py's Corpus on in-memory ``lines`` of text: the word dictionary and the ids of every word
    (with an ``<eos>`` per line) as one int64 tensor."""
    word2idx, idx2word = {}, []
    for line in lines:
        for word in line.split() + ["<eos>"]:
            if word not in word2idx:
                idx2word.append(word)
                word2idx[word] = len(idx2word) - 1
    idss = []
    for line in lines:
        ids = [word2idx[word] for word in line.split() + ["<eos>"]]
        idss.append(torch.tensor(ids).type(torch.int64))
    return idx2word, torch.cat(idss)


def model_class(torch):
    """model.py's RNNModel, built on ``torch.nn``."""
    nn = torch.nn

    class RNNModel(nn.Module):
        """Container module with an encoder, a recurrent module, and a decoder."""

        def __init__(self, rnn_type, ntoken, ninp, nhid, nlayers, dropout=0.5, tie_weights=False):
            super().__init__()
            self.ntoken = ntoken
            self.drop = nn.Dropout(dropout)
            self.encoder = nn.Embedding(ntoken, ninp)
            if rnn_type in ["LSTM", "GRU"]:
                self.rnn = getattr(nn, rnn_type)(ninp, nhid, nlayers, dropout=dropout)
            else:
                nonlinearity = {"RNN_TANH": "tanh", "RNN_RELU": "relu"}[rnn_type]
                self.rnn = nn.RNN(ninp, nhid, nlayers, nonlinearity=nonlinearity, dropout=dropout)
            self.decoder = nn.Linear(nhid, ntoken)
            if tie_weights:
                if nhid != ninp:
                    raise ValueError("When using the tied flag, nhid must be equal to emsize")
                self.decoder.weight = self.encoder.weight
            self.init_weights()
            self.rnn_type, self.nhid, self.nlayers = rnn_type, nhid, nlayers

        def init_weights(self):
            initrange = 0.1
            nn.init.uniform_(self.encoder.weight, -initrange, initrange)
            nn.init.zeros_(self.decoder.bias)
            nn.init.uniform_(self.decoder.weight, -initrange, initrange)

        def forward(self, input, hidden):
            emb = self.drop(self.encoder(input))
            output, hidden = self.rnn(emb, hidden)
            output = self.drop(output)
            decoded = self.decoder(output.view(output.size(0) * output.size(1), output.size(2)))
            return decoded.view(output.size(0), output.size(1), decoded.size(1)), hidden

        def init_hidden(self, bsz):
            weight = next(self.parameters())
            if self.rnn_type == "LSTM":
                return (weight.new_zeros(self.nlayers, bsz, self.nhid), weight.new_zeros(self.nlayers, bsz, self.nhid))
            return weight.new_zeros(self.nlayers, bsz, self.nhid)

    return RNNModel


def transformer_model_class(torch):
    """model.py's PositionalEncoding and TransformerModel, built on ``torch.nn``."""
    nn, F = torch.nn, torch.nn.functional

    class PositionalEncoding(nn.Module):
        """Adds the sine/cosine position code of each step to the embeddings (a buffer of max_len
        steps), then dropout."""

        def __init__(self, d_model, dropout=0.1, max_len=5000):
            super().__init__()
            self.dropout = nn.Dropout(p=dropout)
            pe = torch.zeros(max_len, d_model)
            position = torch.arange(0, max_len, dtype=torch.float).unsqueeze(1)
            div_term = torch.exp(torch.arange(0, d_model, 2).float() * (-math.log(10000.0) / d_model))
            pe[:, 0::2] = torch.sin(position * div_term)
            pe[:, 1::2] = torch.cos(position * div_term)
            pe = pe.unsqueeze(0).transpose(0, 1)
            self.register_buffer("pe", pe)

        def forward(self, x):
            x = x + self.pe[: x.size(0), :]
            return self.dropout(x)

    class TransformerModel(nn.Module):
        """Container module with an encoder, a recurrent or transformer module, and a decoder."""

        def __init__(self, ntoken, ninp, nhead, nhid, nlayers, dropout=0.5):
            super().__init__()
            self.model_type = "Transformer"
            self.src_mask = None
            self.pos_encoder = PositionalEncoding(ninp, dropout, max_len=64)
            encoder_layers = nn.TransformerEncoderLayer(ninp, nhead, nhid, dropout)
            self.transformer_encoder = nn.TransformerEncoder(encoder_layers, nlayers)
            self.encoder = nn.Embedding(ntoken, ninp)
            self.ninp = ninp
            self.ntoken = ntoken
            self.decoder = nn.Linear(ninp, ntoken)
            self.init_weights()

        def _generate_square_subsequent_mask(self, sz):
            return torch.log(torch.tril(torch.ones(sz, sz, dtype=self.decoder.weight.dtype)))

        def init_weights(self):
            initrange = 0.1
            nn.init.uniform_(self.encoder.weight, -initrange, initrange)
            nn.init.zeros_(self.decoder.bias)
            nn.init.uniform_(self.decoder.weight, -initrange, initrange)

        def forward(self, src, has_mask=True):
            if has_mask:
                device = src.device
                if self.src_mask is None or self.src_mask.size(0) != len(src):
                    mask = self._generate_square_subsequent_mask(len(src)).to(device)
                    self.src_mask = mask
            else:
                self.src_mask = None
            src = self.encoder(src) * math.sqrt(self.ninp)
            src = self.pos_encoder(src)
            output = self.transformer_encoder(src, self.src_mask)
            output = self.decoder(output)
            return F.log_softmax(output, dim=-1)

    return TransformerModel


def build(torch, rnn_type, ntokens, dtype, emsize=8, nhid=8, nlayers=2, dropout=0.0, tied=False, nhead=2):
    """The model of main.py (sizes scaled down), on the CPU, in ``dtype``: rnn_type "Transformer"
    builds the TransformerModel (``tied`` does not apply to it)."""
    device = torch.device("cpu")
    if rnn_type == "Transformer":
        model = transformer_model_class(torch)(ntokens, emsize, nhead, nhid, nlayers, dropout)
    else:
        model = model_class(torch)(rnn_type, ntokens, emsize, nhid, nlayers, dropout, tied)
    return model.to(device).to(dtype)


def batchify(torch, data, bsz):
    """Work out how cleanly the data divides into bsz parts; trim off the remainder; one column per
    sequence."""
    nbatch = data.size(0) // bsz
    data = data.narrow(0, 0, nbatch * bsz)
    data = data.view(bsz, -1).t().contiguous()
    return data.to(torch.device("cpu"))


def repackage_hidden(torch, h):
    """Wraps hidden states in new Tensors, to detach them from their history."""
    if isinstance(h, torch.Tensor):
        return h.detach()
    return tuple(repackage_hidden(torch, v) for v in h)


def get_batch(source, i, bptt):
    """The input rows i .. i+seq_len and the next words as targets, flattened."""
    seq_len = min(bptt, len(source) - 1 - i)
    data = source[i : i + seq_len]
    target = source[i + 1 : i + 1 + seq_len].view(-1)
    return data, target


def train(torch, model, train_data, batch_size, bptt=5, lr=20.0, clip=0.25):
    """One epoch of main.py's train(): the loss of every batch, in order."""
    is_transformer = getattr(model, "model_type", None) == "Transformer"
    criterion = torch.nn.NLLLoss() if is_transformer else torch.nn.CrossEntropyLoss()
    ntokens = model.ntoken
    model.train()
    if not is_transformer:
        hidden = model.init_hidden(batch_size)
    losses = []
    for i in range(0, train_data.size(0) - 1, bptt):
        data, targets = get_batch(train_data, i, bptt)
        model.zero_grad()
        if is_transformer:
            output = model(data)
        else:
            hidden = repackage_hidden(torch, hidden)
            output, hidden = model(data, hidden)
        loss = criterion(output.view(-1, ntokens), targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        for p in model.parameters():
            p.data.add_(p.grad, alpha=-lr)
        losses.append(loss.item())
    return losses


def evaluate(torch, model, data_source, batch_size, bptt=5):
    """main.py's evaluate(): the mean loss over ``data_source`` in eval mode, without gradients."""
    is_transformer = getattr(model, "model_type", None) == "Transformer"
    criterion = torch.nn.NLLLoss() if is_transformer else torch.nn.CrossEntropyLoss()
    model.eval()
    total_loss = 0.0
    if not is_transformer:
        hidden = model.init_hidden(batch_size)
    with torch.no_grad():
        for i in range(0, data_source.size(0) - 1, bptt):
            data, targets = get_batch(data_source, i, bptt)
            if is_transformer:
                output = model(data)
            else:
                output, hidden = model(data, hidden)
                hidden = repackage_hidden(torch, hidden)
            output_flat = output.view(-1, model.ntoken)
            total_loss += len(data) * criterion(output_flat, targets).item()
    return total_loss / (len(data_source) - 1)
