"""The data the study runs on: the synthetic task and the training of the embedded model, the cached
evaluation set, ImageNet validation and OOD sets, the ImageNet-C corruptions, and pretrained weights."""
