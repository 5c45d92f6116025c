"""A small GAN that learns to draw 8x8 digits; writes a grid of samples to digits_gan.png (matplotlib).

python examples/digits_gan.py
"""

import matplotlib

matplotlib.use("Agg")
import deepkern as dk
import matplotlib.pyplot as plt
from deepkern import nn, optim
from deepkern.data import DataLoader, TensorDataset, digits

dk.manual_seed(0)
images = digits(train=True).arrays[0].reshape(-1, 64) * 2 - 1  # pixels in [-1, 1]
loader = DataLoader(TensorDataset(images), batch_size=64, shuffle=True, drop_last=True, seed=0)

latent = 32
G = nn.Sequential(
    nn.Linear(latent, 128), nn.LeakyReLU(0.2), nn.Linear(128, 256), nn.LeakyReLU(0.2), nn.Linear(256, 64), nn.Tanh()
)
D = nn.Sequential(
    nn.Linear(64, 256), nn.LeakyReLU(0.2), nn.Dropout(0.3), nn.Linear(256, 128), nn.LeakyReLU(0.2), nn.Linear(128, 1)
)
opt_g = optim.Adam(G.parameters(), lr=1e-3, betas=(0.5, 0.999))
opt_d = optim.Adam(D.parameters(), lr=1e-3, betas=(0.5, 0.999))
bce = nn.BCEWithLogitsLoss()

for epoch in range(150):
    for (real,) in loader:
        n = len(real)
        fake = G(dk.randn(n, latent))
        opt_d.zero_grad()  # D: real -> 0.9 (label smoothing), fake -> 0
        d_loss = bce(D(real), dk.full((n, 1), 0.9)) + bce(D(fake.detach()), dk.zeros(n, 1))
        d_loss.backward()
        opt_d.step()
        opt_g.zero_grad()  # G: make D call the fakes real
        g_loss = bce(D(fake), dk.ones(n, 1))
        g_loss.backward()
        opt_g.step()
    if (epoch + 1) % 25 == 0:
        print(f"epoch {epoch + 1}: D loss {d_loss.item():.3f}, G loss {g_loss.item():.3f}")

G.eval()
with dk.no_grad():
    samples = (G(dk.randn(64, latent)).numpy().reshape(-1, 8, 8) + 1) / 2
fig, axes = plt.subplots(8, 8, figsize=(5, 5))
for img, ax in zip(samples, axes.flat):
    ax.imshow(img, cmap="gray_r", vmin=0, vmax=1)
    ax.axis("off")
fig.savefig("digits_gan.png")
print("wrote digits_gan.png")
