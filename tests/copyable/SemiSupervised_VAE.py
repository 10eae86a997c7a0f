"""Runs after the cells of SemiSupervised_VAE.ipynb tagged "model", "objective" and "train", in
their namespace, with only torch: a 100-label draw, the labels hidden, a tiny M2 on random binary
images through the semi-supervised loss, backward, a few steps of a reader's own loop, the
validation bound, the log-weights, a supervised baseline and its error rate, then M2 on
continuous codes (the Gaussian likelihood of M1+M2)."""
# ruff: noqa: F821  (M2, mlp, labelled_bound, unlabelled_bound, m2_loss, m2_objective, evaluate_m2,
# draw_labels, hide_labels, train_classifier, error_rate, log_importance_weights, torch: from the cells)

torch.manual_seed(0)
images, labels = torch.rand(300, 784), torch.arange(300) % 10
chosen = draw_labels(labels, 20, torch.Generator().manual_seed(0))
seen = hide_labels(labels, chosen)
assert (
    len(chosen) == 20
    and (seen >= 0).sum() == 20
    and torch.equal(torch.bincount(seen[seen >= 0]), torch.full((10,), 2))
)

model = M2(784, [16], latent_dim=3)
generator = torch.Generator().manual_seed(0)
objective = m2_objective(images, seen, alpha_over_n=0.1, generator=generator)
x = torch.bernoulli(images[:8], generator=generator)
loss, terms = objective(model, x)
assert set(terms) == {"elbo", "reconstruction", "kl"} and all(t.shape == (8,) for t in terms.values())
loss.backward()
assert torch.isfinite(loss) and all(
    p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters()
)

optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
losses = []
for _ in range(20):
    loss, _ = objective(model, x)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    losses.append(loss.item())
assert losses[-1] < losses[0], losses
scores = evaluate_m2(model, x, batch_size=4)
assert set(scores) == {"elbo", "reconstruction", "kl"} and scores["elbo"] < 0
with torch.no_grad():
    assert log_importance_weights(model, x[:3], 5).shape == (5, 3)

classifier = train_classifier(mlp([784, 16, 10]), images[chosen], labels[chosen], 5, 1e-3, generator)
assert 0 <= error_rate(classifier, x, labels[:8], batch_size=4) <= 100

codes = torch.randn(8, 6)
on_codes = M2(6, [16], latent_dim=3, likelihood="gaussian")
loss = m2_loss(on_codes, codes, codes[:4], labels[:4], alpha=10.0, labelled_share=0.5)[0]
loss.backward()
assert on_codes.log_scale.grad is not None
print("copied cells ok")
