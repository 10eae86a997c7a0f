"""Runs after the cells of IAF_VAE.ipynb tagged "model", in their namespace, with only torch:
a tiny IAF VAE on a random binary batch, through encode, the flow, decode, the ELBO and the log-weights."""
# ruff: noqa: F821  (IAFVAE, elbo_terms, sample_posterior, log_importance_weights and torch come from the cells)

torch.manual_seed(0)
model = IAFVAE(hidden_sizes=[16, 8], latent_dim=3, flow_steps=2, flow_hidden_size=6, context_size=4)
x = torch.rand(5, 784).bernoulli()

mu, logvar = model.encode(x)
assert mu.shape == logvar.shape == (5, 3)
assert model.decode(mu).shape == x.shape

z, log_q = sample_posterior(model, x)
assert z.shape == (5, 3) and log_q.shape == (5,)
log_px_z, kl, elbo = elbo_terms(model, x)
assert log_px_z.shape == kl.shape == elbo.shape == (5,)
loss = -elbo.mean()
model.zero_grad()
loss.backward()
assert torch.isfinite(loss)
assert all(torch.isfinite(p.grad).all() for p in model.parameters())
assert any(p.grad.abs().sum() > 0 for p in model.flow.parameters()), "the flow receives no gradient"

log_w = log_importance_weights(model, x, 7)
assert log_w.shape == (7, 5) and torch.isfinite(log_w).all()
print("copied cells ok")
