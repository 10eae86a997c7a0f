"""Runs after the cells of Basic_VAE.ipynb tagged "model", "objective" and "train", in their
namespace, with only torch: a tiny VAE on a random binary batch, through encode, decode, both
losses and the log-weights, then a few epochs of the training loop on random grey images."""
# ruff: noqa: F821  (VAE, elbo_terms, elbo_objective, evaluate_elbo, train, log_importance_weights,
# gaussian_kl and torch come from the cells)

torch.manual_seed(0)
model = VAE(hidden_sizes=[16, 8], latent_dim=3)
x = torch.rand(5, 784).bernoulli()

mu, logvar = model.encode(x)
assert mu.shape == logvar.shape == (5, 3)
assert model.decode(mu).shape == x.shape

for kl_form in ("analytic", "monte_carlo"):
    log_px_z, kl, elbo = elbo_terms(model, x, kl_form)
    assert log_px_z.shape == kl.shape == elbo.shape == (5,)
    loss = -elbo.mean()
    model.zero_grad()
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())

log_w = log_importance_weights(model, x, 7)
assert log_w.shape == (7, 5) and torch.isfinite(log_w).all()
assert torch.equal(gaussian_kl(torch.zeros(2, 3), torch.zeros(2, 3)), torch.zeros(2))

# The training loop, copied with the rest: a few epochs on random grey images raise the ELBO.
grey = torch.rand(64, 784)
history = train(
    model, elbo_objective, evaluate_elbo, grey, grey[:16], range(1, 6), 16, 1e-2, torch.Generator()
)
assert list(history) == [
    "train_reconstruction", "train_kl", "train_elbo", "val_reconstruction", "val_kl", "val_elbo", "seconds"
]  # fmt: skip
assert history["val_elbo"][-1] > history["val_elbo"][0], history["val_elbo"]
print("copied cells ok")
