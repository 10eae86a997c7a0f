"""Runs after the cells of VampPrior_VAE.ipynb tagged "model" and "objective", in their namespace,
with only torch: a tiny VampPrior VAE on a random binary batch, through encode, decode, the prior,
the loss, the log-weights and backward (the pseudo-inputs must receive gradients), then a few steps
of a reader's own training loop on the objective, and the validation score."""
# ruff: noqa: F821  (VampPriorVAE, elbo_terms, elbo_objective, evaluate_elbo, log_importance_weights,
# ... and torch come from the cells)

torch.manual_seed(0)
model = VampPriorVAE(hidden_sizes=[16, 8], latent_dim=3, n_pseudo_inputs=4)
x = torch.rand(5, 784).bernoulli()

mu, logvar = model.encode(x)
assert mu.shape == logvar.shape == (5, 3)
assert model.decode(mu).shape == x.shape
assert model.pseudo_inputs().shape == (4, 784)
assert model.prior_log_prob(torch.randn(7, 5, 3)).shape == (7, 5)
assert model.sample_prior(6, torch.Generator().manual_seed(0)).shape == (6, 3)

log_px_z, kl, elbo = elbo_terms(model, x)
assert log_px_z.shape == kl.shape == elbo.shape == (5,)
loss = -elbo.mean()
loss.backward()
assert torch.isfinite(loss)
assert all(torch.isfinite(p.grad).all() for p in model.parameters())
assert model.pseudo_logits.grad.abs().sum() > 0, "the pseudo-inputs learn through the prior"

log_w = log_importance_weights(model, x, 7)
assert log_w.shape == (7, 5) and torch.isfinite(log_w).all()

# The objective in a reader's own loop: a few Adam steps on one batch lower the loss.
optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
losses = []
for _ in range(20):
    loss, terms = elbo_objective(model, x)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    losses.append(loss.item())
assert list(terms) == ["reconstruction", "kl", "elbo"] and all(t.shape == (5,) for t in terms.values())
assert losses[-1] < losses[0], losses
scores = evaluate_elbo(model, x, batch_size=2)
assert list(scores) == ["reconstruction", "kl", "elbo"] and all(isinstance(v, float) for v in scores.values())
assert model.training, "evaluate_elbo puts the model back in training mode"
print("copied cells ok")
