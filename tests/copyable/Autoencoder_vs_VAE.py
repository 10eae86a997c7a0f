# ruff: noqa: F821 (the names come from the copied cells, run first in the same namespace)
# A reader's own use of the copied cells (mlp, reconstruction_nats, Autoencoder, autoencoder_loss, VAE,
# vae_terms, both_objective, evaluate_both, log_importance_weights): tiny models, one random binary
# batch, one backward pass each.
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

# Both models at once, as the notebook trains them: the summed loss gives each its own gradient.
models = torch.nn.ModuleDict({"autoencoder": Autoencoder([16, 8], 2), "vae": VAE([16, 8], 2)})
torch.manual_seed(1)
loss, terms = both_objective(models, x)
loss.backward()
together = [p.grad.clone() for p in models.parameters()]
models.zero_grad()
torch.manual_seed(1)  # the same z draws
autoencoder_loss(models["autoencoder"], x).mean().backward()
reconstruction, kl = vae_terms(models["vae"], x)
(reconstruction + kl).mean().backward()
assert all(torch.equal(a, p.grad) for a, p in zip(together, models.parameters(), strict=True))
assert set(terms) == {"autoencoder_bce", "vae_bce", "vae_kl"} and all(t.shape == (5,) for t in terms.values())
scores = evaluate_both(models, x)
assert set(scores) == {"autoencoder_bce", "vae_bce", "vae_kl", "elbo"}
assert scores["elbo"] == -(scores["vae_bce"] + scores["vae_kl"])
assert log_importance_weights(models["vae"], x, 7).shape == (7, 5)
print("copied cells ok")
