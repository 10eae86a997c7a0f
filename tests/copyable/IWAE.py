"""Runs after the cells of IWAE.ipynb tagged "model" and "objective", in their namespace, with only
torch: a tiny VAE on a random binary batch, through the log-weights, the bound, both gradient
estimators, the objective that su.train minimises and the validation score it records."""
# ruff: noqa: F821  (VAE, log_importance_weights, iwae_bound, iwae_loss, iwae_objective, evaluate_iwae, elbo_terms and torch come from the cells)

torch.manual_seed(0)
model = VAE(hidden_sizes=[16, 8], latent_dim=3)
x = torch.rand(5, 784).bernoulli()

mu, logvar = model.encode(x)
assert mu.shape == logvar.shape == (5, 3)
assert model.decode(mu).shape == x.shape

log_w = log_importance_weights(model, x, 7)
assert log_w.shape == (7, 5) and torch.isfinite(log_w).all()
assert iwae_bound(log_w).shape == (5,)

for estimator in ("iwae", "dreg"):
    loss, log_w = iwae_loss(model, x, 4, estimator)
    assert loss.shape == () and log_w.shape == (4, 5) and not log_w.requires_grad
    model.zero_grad()
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())

loss, terms = iwae_objective(model, x, 4, "dreg")
loss.backward()
assert set(terms) == {"bound", "elbo"} and all(t.shape == (5,) for t in terms.values())
assert (terms["bound"] >= terms["elbo"] - 1e-4).all(), "log of the mean weight >= mean of the logs"
scores = evaluate_iwae(model, x, 3, batch_size=2)
assert list(scores) == ["reconstruction", "kl", "elbo", "bound"]

log_px_z, kl, elbo = elbo_terms(model, x)
assert log_px_z.shape == kl.shape == elbo.shape == (5,)
print("copied cells ok")
