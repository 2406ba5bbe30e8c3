"""From images to a trained hash network: data, backbones, features, methods, the training loop."""
