# ruff: noqa: F821 (the names come from the copied cells, run first in the same namespace)
# A reader's own use of the copied model cells (mlp, reconstruction_nats, Autoencoder,
# autoencoder_loss, VAE, vae_terms): tiny models, one random binary batch, one backward pass each.
import torch

torch.manual_seed(0)
x = torch.rand(5, 784).bernoulli()

# The VAE: encode(x) -> (mu, logvar), decode(z) -> logits; its loss is the negative ELBO.
vae = VAE([16, 8], latent_dim=2)
mu, logvar = vae.encode(x)
assert mu.shape == logvar.shape == (5, 2)
assert vae.decode(mu).shape == x.shape
reconstruction, kl = vae_terms(vae, x)
assert reconstruction.shape == kl.shape == (5,) and (kl >= 0).all()
loss = (reconstruction + kl).mean()
loss.backward()
assert torch.isfinite(loss)
assert all(torch.isfinite(p.grad).all() for p in vae.parameters())

# The autoencoder: encode(x) -> one point z (not a distribution), decode(z) -> logits.
autoencoder = Autoencoder([16, 8], latent_dim=2)
z = autoencoder.encode(x)
assert z.shape == (5, 2)
assert autoencoder.decode(z).shape == x.shape
loss = autoencoder_loss(autoencoder, x).mean()
loss.backward()
assert torch.isfinite(loss) and loss > 0
assert all(torch.isfinite(p.grad).all() for p in autoencoder.parameters())
print("copied cells ok")
