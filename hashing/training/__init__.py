"""From images to a trained hash network: data, backbones, features, the network, the model file, the training loop."""
