"""Port of PyTorch's DCGAN example (examples/dcgan/main.py, in its 32x32 form with smaller nz, ngf
and ndf): the generator and discriminator, weights_init, BCELoss, Adam with betas=(0.5, 0.999) and
the training step of both networks, written once against the ``torch`` namespace it is given:
PyTorch itself or deepkern."""


def model_classes(torch):
    """main.py's Generator and Discriminator (32x32 images), built on ``torch.nn``, and its
    weights_init."""
    nn = torch.nn

    class Generator(nn.Module):
        def __init__(self, nz, ngf, nc):
            super().__init__()
            self.main = nn.Sequential(
                # input is Z, going into a convolution
                nn.ConvTranspose2d(nz, ngf * 4, 4, 1, 0, bias=False),
                nn.BatchNorm2d(ngf * 4),
                nn.ReLU(True),
                # state size. (ngf*4) x 4 x 4
                nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False),
                nn.BatchNorm2d(ngf * 2),
                nn.ReLU(True),
                # state size. (ngf*2) x 8 x 8
                nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False),
                nn.BatchNorm2d(ngf),
                nn.ReLU(True),
                # state size. (ngf) x 16 x 16
                nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False),
                nn.Tanh(),
                # state size. (nc) x 32 x 32
            )

        def forward(self, input):
            return self.main(input)

    class Discriminator(nn.Module):
        def __init__(self, ndf, nc):
            super().__init__()
            self.main = nn.Sequential(
                # input is (nc) x 32 x 32
                nn.Conv2d(nc, ndf, 4, 2, 1, bias=False),
                nn.LeakyReLU(0.2, inplace=True),
                # state size. (ndf) x 16 x 16
                nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False),
                nn.BatchNorm2d(ndf * 2),
                nn.LeakyReLU(0.2, inplace=True),
                # state size. (ndf*2) x 8 x 8
                nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False),
                nn.BatchNorm2d(ndf * 4),
                nn.LeakyReLU(0.2, inplace=True),
                # state size. (ndf*4) x 4 x 4
                nn.Conv2d(ndf * 4, 1, 4, 1, 0, bias=False),
                nn.Sigmoid(),
            )

        def forward(self, input):
            output = self.main(input)
            return output.view(-1, 1).squeeze(1)

    # custom weights initialization called on netG and netD
    def weights_init(m):
        classname = m.__class__.__name__
        if classname.find("Conv") != -1:
            torch.nn.init.normal_(m.weight, 0.0, 0.02)
        elif classname.find("BatchNorm") != -1:
            torch.nn.init.normal_(m.weight, 1.0, 0.02)
            torch.nn.init.zeros_(m.bias)

    return Generator, Discriminator, weights_init


def build(torch, dtype, nz=8, ngf=4, ndf=4, nc=3):
    """netG and netD of main.py, initialised with weights_init, in ``dtype``."""
    Generator, Discriminator, weights_init = model_classes(torch)
    netG = Generator(nz, ngf, nc).to(dtype)
    netG.apply(weights_init)
    netD = Discriminator(ndf, nc).to(dtype)
    netD.apply(weights_init)
    return netG, netD


def train(torch, netG, netD, images, noises, fixed_noise, batch_size, lr=0.0002, beta1=0.5):
    """main.py's loop over a DataLoader of ``images`` (a NumPy array, N x nc x 32 x 32; in order:
    the example shuffles) with the generator inputs ``noises`` (one nz x 1 x 1 array per image):
    (1) update D to maximize log(D(x)) + log(1 - D(G(z))), (2) update G to maximize log(D(G(z))).
    Returns errD, errG, D(x), D(G(z)) before and after D's step, per batch, and the generator's
    images of ``fixed_noise`` after the last batch (NumPy)."""
    nn, optim = torch.nn, torch.optim
    device = torch.device("cpu")
    dataset = torch.utils.data.TensorDataset(torch.from_numpy(images))
    dataloader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)
    netG.to(device)
    netD.to(device)
    criterion = nn.BCELoss()
    real_label, fake_label = 1, 0
    optimizerD = optim.Adam(netD.parameters(), lr=lr, betas=(beta1, 0.999))
    optimizerG = optim.Adam(netG.parameters(), lr=lr, betas=(beta1, 0.999))
    history, seen = [], 0
    for data in dataloader:
        ############################
        # (1) Update D network
        ###########################
        # train with real
        netD.zero_grad()
        real_cpu = data[0].to(device)
        batch_size = real_cpu.size(0)
        label = torch.full((batch_size,), real_label, dtype=real_cpu.dtype, device=device)

        output = netD(real_cpu)
        errD_real = criterion(output, label)
        errD_real.backward()
        D_x = output.mean().item()

        # train with fake
        noise = torch.from_numpy(noises[seen : seen + batch_size]).to(device)
        seen += batch_size
        fake = netG(noise)
        label.fill_(fake_label)
        output = netD(fake.detach())
        errD_fake = criterion(output, label)
        errD_fake.backward()
        D_G_z1 = output.mean().item()
        errD = errD_real + errD_fake
        optimizerD.step()

        ############################
        # (2) Update G network
        ###########################
        netG.zero_grad()
        label.fill_(real_label)  # fake labels are real for generator cost
        output = netD(fake)
        errG = criterion(output, label)
        errG.backward()
        D_G_z2 = output.mean().item()
        optimizerG.step()
        history.append((errD.item(), errG.item(), D_x, D_G_z1, D_G_z2))
    fake = netG(torch.from_numpy(fixed_noise).to(device))
    return history, fake.detach().numpy()
