"""The model: seeded k-means, the residual quantizer, the RQ-VAE, codebook sizing, behaviour fusion
and the integer keys of code tuples. Imports only ``config`` and the base modules."""
