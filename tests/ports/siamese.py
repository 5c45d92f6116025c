"""Port of the well-known Siamese network tutorial code (a small CNN run on both images of a pair,
the contrastive loss of Hadsell et al. written with pairwise_distance, clamp, pow and mean, trained
with Adam), plus the triplet form of the same embedding net with nn.TripletMarginLoss and with
the loss written by hand; written once against the ``torch`` namespace it is given: PyTorch itself
or deepkern."""

import numpy as np


def model_classes(torch):
    """The embedding network, both losses and the pairs' Dataset, built on ``torch.nn`` and
    ``torch.utils.data``."""
    nn, F = torch.nn, torch.nn.functional
    Dataset = torch.utils.data.Dataset

    class SiameseNetworkDataset(Dataset):
        """Image ``index`` and its partner, with label 1 when their classes differ (the tutorial
        draws the partner at random; here it is given)."""

        def __init__(self, images, classes, partners):
            self.images, self.classes, self.partners = images, classes, partners

        def __getitem__(self, index):
            other = self.partners[index]
            label = np.array([int(self.classes[index] != self.classes[other])], dtype=self.images.dtype)
            return torch.from_numpy(self.images[index]), torch.from_numpy(self.images[other]), torch.from_numpy(label)

        def __len__(self):
            return len(self.images)

    class SiameseNetwork(nn.Module):
        def __init__(self):
            super().__init__()
            # Setting up the Sequential of CNN Layers
            self.cnn1 = nn.Sequential(
                nn.Conv2d(1, 6, kernel_size=5, stride=2),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(3, stride=2),
                nn.Conv2d(6, 8, kernel_size=3, stride=1),
                nn.ReLU(inplace=True),
            )
            # Setting up the Fully Connected Layers
            self.fc1 = nn.Sequential(
                nn.Linear(32, 24),
                nn.ReLU(inplace=True),
                nn.Linear(24, 16),
                nn.ReLU(inplace=True),
                nn.Linear(16, 2),
            )

        def forward_once(self, x):
            # This function will be called for both images; its output is used to determine the similiarity
            output = self.cnn1(x)
            output = output.view(output.size()[0], -1)
            output = self.fc1(output)
            return output

        def forward(self, input1, input2):
            # In this function we pass in both images and obtain both vectors which are returned
            output1 = self.forward_once(input1)
            output2 = self.forward_once(input2)
            return output1, output2

    class ContrastiveLoss(nn.Module):
        def __init__(self, margin=2.0):
            super().__init__()
            self.margin = margin

        def forward(self, output1, output2, label):
            # Calculate the euclidean distance and calculate the contrastive loss
            euclidean_distance = F.pairwise_distance(output1, output2, keepdim=True)
            loss_contrastive = torch.mean(
                (1 - label) * torch.pow(euclidean_distance, 2)
                + (label) * torch.pow(torch.clamp(self.margin - euclidean_distance, min=0.0), 2)
            )
            return loss_contrastive

    class TripletLoss(nn.Module):
        """max(d(a, p) - d(a, n) + margin, 0) with squared distances summed by hand."""

        def __init__(self, margin=1.0):
            super().__init__()
            self.margin = margin

        def calc_euclidean(self, x1, x2):
            return (x1 - x2).pow(2).sum(1)

        def forward(self, anchor, positive, negative):
            distance_positive = self.calc_euclidean(anchor, positive)
            distance_negative = self.calc_euclidean(anchor, negative)
            losses = torch.relu(distance_positive - distance_negative + self.margin)
            return losses.mean()

    return SiameseNetwork, ContrastiveLoss, TripletLoss, SiameseNetworkDataset


def build(torch, dtype):
    """The embedding network in ``dtype``."""
    return model_classes(torch)[0]().to(dtype)


def train_pairs(torch, net, images, classes, partners, batch_size, lr=0.0005):
    """The tutorial's loop over a DataLoader of (img0, img1, label) from its Dataset (NumPy
    ``images`` N x 1 x H x W, their ``classes`` and each one's partner; in order: the tutorial
    shuffles): Adam on the contrastive loss. Returns the loss per batch."""
    optim = torch.optim
    _, ContrastiveLoss, _, SiameseNetworkDataset = model_classes(torch)
    siamese_dataset = SiameseNetworkDataset(images, classes, partners)
    train_dataloader = torch.utils.data.DataLoader(siamese_dataset, shuffle=False, num_workers=0, batch_size=batch_size)
    criterion = ContrastiveLoss()
    optimizer = optim.Adam(net.parameters(), lr=lr)
    losses = []
    for img0, img1, label in train_dataloader:
        # Zero the gradients
        optimizer.zero_grad()
        # Pass in the two images into the network and obtain two outputs
        output1, output2 = net(img0, img1)
        # Pass the outputs of the networks and label into the loss function
        loss_contrastive = criterion(output1, output2, label)
        # Calculate the backpropagation
        loss_contrastive.backward()
        # Optimize
        optimizer.step()
        losses.append(loss_contrastive.item())
    return losses


def train_triplets(torch, net, anchors, positives, negatives, batch_size, by_hand, lr=0.01):
    """Batches of (anchor, positive, negative) images (NumPy arrays N x 1 x H x W) through the same
    network, SGD with momentum on the triplet loss: nn.TripletMarginLoss(p=2), or the hand-written
    squared form when ``by_hand``. Returns the loss per batch."""
    nn, optim = torch.nn, torch.optim
    data = torch.utils.data
    dataset = data.TensorDataset(torch.from_numpy(anchors), torch.from_numpy(positives), torch.from_numpy(negatives))
    loader = data.DataLoader(dataset, batch_size=batch_size)
    criterion = model_classes(torch)[2]() if by_hand else nn.TripletMarginLoss(margin=1.0, p=2)
    optimizer = optim.SGD(net.parameters(), lr=lr, momentum=0.9)
    losses = []
    net.train()
    for anchor, positive, negative in loader:
        optimizer.zero_grad()
        anchor_out = net.forward_once(anchor)
        positive_out = net.forward_once(positive)
        negative_out = net.forward_once(negative)
        loss = criterion(anchor_out, positive_out, negative_out)
        loss.backward()
        optimizer.step()
        losses.append(loss.cpu().detach().numpy())
    return losses
