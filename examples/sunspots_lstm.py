"""Forecast next year's sunspot number from the previous 20 years with an LSTM (statsmodels' series).

python examples/sunspots_lstm.py     # compares the test MSE with the persistence baseline
"""

import deepkern as dk
from deepkern import nn, optim
from deepkern.data import DataLoader, sunspots


class Forecaster(nn.Module):
    def __init__(self, hidden=32):
        super().__init__()
        self.lstm = nn.LSTM(input_size=1, hidden_size=hidden, batch_first=True)
        self.head = nn.Linear(hidden, 1)

    def forward(self, x):  # x: (batch, 20 years, 1), normalised
        out, (h_n, c_n) = self.lstm(x)
        return self.head(out[:, -1])  # the next year


dk.manual_seed(0)
series = sunspots(window=20)  # chronological split; normalised with training statistics
loader = DataLoader(series.train, batch_size=16, shuffle=True, seed=0)
model = Forecaster()
opt = optim.Adam(model.parameters(), lr=5e-3)
mse = nn.MSELoss()

for _epoch in range(60):
    model.train()
    for x, y in loader:
        opt.zero_grad()
        mse(model(x), y).backward()
        opt.step()

model.eval()
with dk.no_grad():
    x, y = (dk.from_numpy(a) for a in series.test.arrays)
    test_mse = mse(model(x), y).item()
print(f"test MSE {test_mse:.4f}, persistence baseline {series.persistence_mse('test'):.4f} (normalised units)")
