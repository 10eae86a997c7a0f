"""Runs after the cells of VQ_VAE.ipynb tagged "model" and "objective", in their namespace, with only
torch: a tiny VQ-VAE on a random binary batch through the objective (with restarts), backward, a few
steps of a reader's own loop, the validation score, then a tiny prior over its codes, its samples
and the bound."""
# ruff: noqa: F821  (VQVAE, vq_objective, evaluate_vq, CodePrior, prior_objective, evaluate_prior,
# bound_terms and torch come from the cells)

torch.manual_seed(0)
model = VQVAE(hidden_sizes=[16], n_codes=4, code_dim=3, codebook_size=8)
x = torch.rand(6, 784).bernoulli()

restarts = []
objective = vq_objective(commitment_cost=0.25, restart_every=5, restarts=restarts)
loss, terms = objective(model, x)
assert list(terms) == ["reconstruction", "distance", "elbo"] and all(t.shape == (6,) for t in terms.values())
loss.backward()
assert torch.isfinite(loss) and all(torch.isfinite(p.grad).all() for p in model.parameters())

optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
losses = []
for _ in range(20):
    loss, _ = vq_objective(commitment_cost=0.25)(model, x)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    losses.append(loss.item())
assert losses[-1] < losses[0], losses
for _ in range(10):
    objective(model, x)
assert len(restarts) == 2, restarts  # after steps 5 and 10
scores = evaluate_vq(model, x, batch_size=4)
assert set(scores) == {"reconstruction", "distance", "elbo", "codes_used", "perplexity"}

prior = CodePrior(n_codes=4, codebook_size=8, hidden_sizes=[16])
prior_loss, prior_terms = prior_objective(prior, x, vq_model=model)
prior_loss.backward()
assert prior_terms["code_nll"].shape == (6,) and all(p.grad is not None for p in prior.parameters())
assert prior.sample(3, torch.Generator().manual_seed(0)).shape == (3, 4)
log_px_z, log_pz, codes = bound_terms(model, prior, x, batch_size=4)
assert log_px_z.shape == log_pz.shape == (6,) and codes.shape == (6, 4)
assert evaluate_prior(prior, x, vq_model=model)["bound"] > 0
print("copied cells ok")
