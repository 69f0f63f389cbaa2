"""The latent-conditioned NeRF: encoding, decoder field, rays + visual hull, ray marching, presets."""
