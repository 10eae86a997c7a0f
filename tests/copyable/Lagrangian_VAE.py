"""Runs after the cells of Lagrangian_VAE.ipynb tagged "model", "objective" and "train", in their
namespace, with only torch: a tiny VAE on a random binary batch, through encode, decode, the three
constraint terms, the Lagrangian (its gradient reaching the multipliers too) and the log-weights,
then a few epochs of the two-player training loop on random grey images."""
# ruff: noqa: F821  (VAE, constraint_terms, lagrangian, mmd, log_importance_weights, train, torch come from the cells)

torch.manual_seed(0)
model = VAE(hidden_sizes=[16], latent_dim=3)
x = torch.rand(5, 784).bernoulli()

mu, logvar = model.encode(x)
assert mu.shape == logvar.shape == (5, 3)
assert model.decode(mu).shape == x.shape

distortion, rate, scaled_mmd = constraint_terms(model, x, mmd_scale=1e4)
assert distortion > 0 and rate >= 0 and scaled_mmd >= 0
lambdas = [torch.tensor(1.0, requires_grad=True) for _ in range(2)]
for mi in (1.0, -1.0):
    loss = lagrangian(*constraint_terms(model, x, 1e4), *lambdas, mi=mi, eps1=100.0, eps2=4.0)
    model.zero_grad()
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    assert all(lam.grad is not None for lam in lambdas)  # dL/dlambda_i = the constraint's violation

same = torch.randn(50, 3)
assert mmd(same, same).abs() < 1e-6  # zero for identical samples
log_w = log_importance_weights(model, x, 7)
assert log_w.shape == (7, 5) and torch.isfinite(log_w).all()
# The training loop, copied with the rest: with a bound no model meets, lambda1 rises every step.
grey = torch.rand(64, 784)
record = train(
    model, grey, grey[:16], range(1, 4), 16, torch.Generator(), mi=1.0, learn_multipliers=True, eps1=1.0,
    eps2=100.0, mmd_scale=1e4, learning_rate=1e-3, adam_beta1=0.5, lambda_learning_rate=1e-2, lambda_init=1.0,
    lambda_range=(0.001, 100.0),
)  # fmt: skip
assert record["epochs"] == 3 and len(record["steps"]["lambda1"]) == 3 * 4
assert len(record["history"]["val_d_plus_r"]) == 3 and "seconds" in record["history"]
lambda1 = record["steps"]["lambda1"]
assert all(later > earlier for earlier, later in zip(lambda1, lambda1[1:], strict=False)), lambda1
print("copied cells ok")
