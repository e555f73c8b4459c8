"""Model definitions: ConvNeXt from scratch, pretrained backbones and heads."""
