"""Asset2Vec's embedding backend: latent NeRF, training, library intelligence and the service.

Never reads or writes an artist's .blend files: it receives views and returns data.
"""
