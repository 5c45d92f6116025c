"""Port of PyTorch's time-sequence prediction example (examples/time_sequence_prediction: two
LSTMCells and a Linear layer learn sine waves, trained with LBFGS through a closure, then predict
the future by feeding each output back in), written once against the ``torch`` namespace it is given:
PyTorch itself or deepkern."""


def sine_waves(np, n=8, length=24, period=4.0, seed=2):
    """generate_sine_wave.py: ``n`` sine waves of ``length`` samples, randomly shifted (float64)."""
    rng = np.random.RandomState(seed)
    x = np.empty((n, length), "int64")
    x[:] = np.array(range(length)) + rng.randint(-4 * int(period), 4 * int(period), n).reshape(n, 1)
    return np.sin(x / 1.0 / period).astype("float64")


def model_class(torch):
    """train.py's Sequence, built on ``torch.nn``."""
    nn = torch.nn

    class Sequence(nn.Module):
        def __init__(self, hidden=12):
            super().__init__()
            self.hidden = hidden
            self.lstm1 = nn.LSTMCell(1, hidden)
            self.lstm2 = nn.LSTMCell(hidden, hidden)
            self.linear = nn.Linear(hidden, 1)

        def forward(self, input, future=0):
            outputs = []
            h_t = torch.zeros(input.size(0), self.hidden, dtype=torch.double)
            c_t = torch.zeros(input.size(0), self.hidden, dtype=torch.double)
            h_t2 = torch.zeros(input.size(0), self.hidden, dtype=torch.double)
            c_t2 = torch.zeros(input.size(0), self.hidden, dtype=torch.double)

            for input_t in input.split(1, dim=1):
                h_t, c_t = self.lstm1(input_t, (h_t, c_t))
                h_t2, c_t2 = self.lstm2(h_t, (h_t2, c_t2))
                output = self.linear(h_t2)
                outputs += [output]
            for _ in range(future):  # if we should predict the future
                h_t, c_t = self.lstm1(output, (h_t, c_t))
                h_t2, c_t2 = self.lstm2(h_t, (h_t2, c_t2))
                output = self.linear(h_t2)
                outputs += [output]
            return torch.stack(outputs, 1).squeeze(2) if future else torch.cat(outputs, dim=1)

    return Sequence


def build(torch):
    """train.py's model, in float64 as there."""
    seq = model_class(torch)()
    seq.double()
    return seq


def train(torch, seq, data, steps=2, future=10, max_iter=8):
    """train.py's loop: per step, one LBFGS step (``max_iter`` closure calls at most) on the training
    waves and a prediction of the test waves ``future`` samples ahead. Returns the loss of every
    closure call, the test losses and the last prediction (a NumPy array)."""
    nn, optim = torch.nn, torch.optim
    input = torch.from_numpy(data[3:, :-1])
    target = torch.from_numpy(data[3:, 1:])
    test_input = torch.from_numpy(data[:3, :-1])
    test_target = torch.from_numpy(data[:3, 1:])
    criterion = nn.MSELoss()
    optimizer = optim.LBFGS(seq.parameters(), lr=0.8, max_iter=max_iter)
    closure_losses, test_losses = [], []
    for _ in range(steps):

        def closure():
            optimizer.zero_grad()
            out = seq(input)
            loss = criterion(out, target)
            closure_losses.append(loss.item())
            loss.backward()
            return loss

        optimizer.step(closure)
        with torch.no_grad():
            pred = seq(test_input, future=future)
            loss = criterion(pred[:, :-future], test_target)
            test_losses.append(loss.item())
            y = pred.detach().numpy()
    return closure_losses, test_losses, y
