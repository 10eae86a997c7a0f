"""Runs after the cells of Beta_VAE.ipynb tagged "model" and "objective", in their namespace, with
only torch: a tiny VAE on a random binary batch through the beta-weighted objective, backward, a
few steps of a reader's own loop, the validation score and the log-weights."""
# ruff: noqa: F821  (VAE, beta_objective, elbo_terms, evaluate_elbo, log_importance_weights and torch
# come from the cells)

torch.manual_seed(0)
model = VAE(hidden_sizes=[16, 8], latent_dim=3)
x = torch.rand(5, 784).bernoulli()

loss, terms = beta_objective(model, x, beta=4.0)
assert list(terms) == ["reconstruction", "kl", "elbo"] and all(t.shape == (5,) for t in terms.values())
loss.backward()
assert torch.isfinite(loss) and all(torch.isfinite(p.grad).all() for p in model.parameters())

optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
losses = []
for _ in range(20):
    loss, _ = beta_objective(model, x, beta=0.5)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    losses.append(loss.item())
assert losses[-1] < losses[0], losses
scores = evaluate_elbo(model, x, batch_size=2)
assert list(scores) == ["reconstruction", "kl", "elbo"] and model.training
assert log_importance_weights(model, x, 7).shape == (7, 5)
print("copied cells ok")
