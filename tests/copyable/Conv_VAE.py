"""Runs after the cells of Conv_VAE.ipynb tagged "model", "objective" and "train", in their namespace,
with only torch: a tiny convolutional VAE on a random binary batch, through encode, decode, the loss
and backward, the evaluation in eval() mode, the importance weights and the recording objective."""
# ruff: noqa: F821  (ConvVAE, elbo_terms, elbo_objective, ... and torch come from the cells)

torch.manual_seed(0)
model = ConvVAE(encoder_channels=[4, 8], decoder_channels=[4, 4], fc_hidden=16, latent_dim=3, dropout=0.1)
x = torch.rand(5, 784).bernoulli()

mu, logvar = model.encode(x)
assert mu.shape == (5, 3) and logvar.shape == (5, 3), (mu.shape, logvar.shape)
assert model.decode(mu).shape == x.shape
assert model.decode(torch.randn(7, 5, 3)).shape == (7, 5, 784)  # (samples, images, latent) at once

log_px_z, kl, elbo = elbo_terms(model, x)
assert log_px_z.shape == kl.shape == elbo.shape == (5,)
assert (kl >= 0).all() and (log_px_z <= 0).all()
loss = -elbo.mean()
loss.backward()
assert torch.isfinite(loss)
assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
assert torch.allclose(gaussian_kl(torch.zeros(2, 3), torch.zeros(2, 3)), torch.zeros(2))

# The objective for a training loop, and a record of every batch with reconstructions after step 1.
batch_terms, snapshots = [], {}
objective = recording(elbo_objective, batch_terms, snapshots, x[:2], steps=[1])
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
for _ in range(2):
    loss, terms = objective(model, x)
    assert set(terms) == {"reconstruction", "kl", "elbo"} and loss.shape == ()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
assert len(batch_terms) == 2 and batch_terms[0].shape == (3,)
assert list(snapshots) == ["batch 1"] and snapshots["batch 1"].shape == (2, 784)
assert model.training, "reconstruct puts the model back in training mode"

scores = evaluate_elbo(model, x, batch_size=2)
assert set(scores) == {"reconstruction", "kl", "elbo"} and model.training
assert log_importance_weights(model.eval(), x, 4).shape == (4, 5)

model.eval()  # a fixed function of x: the same code twice
with torch.no_grad():
    assert torch.equal(model.encode(x)[0], model.encode(x)[0])
print("copied cells ok")
