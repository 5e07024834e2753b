"""Image bytes: sniffing, decoding and resizing, perceptual hashes and the eval index, the unsafe-image hook."""
