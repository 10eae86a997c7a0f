# ruff: noqa: F821 (runs after the notebook's cells tagged "model", in their namespace)
# MADE has no latent code (no encode/decode): check the masked network's logits, its exact NLL and backward.
x = torch.rand(5, 784).bernoulli()
model = MADE(784, [32], n_masks=2, direct_connection=True, seed=0)
for m in range(model.n_masks):
    model.use_mask(m)
    logits = model(x)
    assert logits.shape == x.shape, logits.shape
    log_p = log_prob(model, x)
    assert log_p.shape == (5,) and (log_p < 0).all(), log_p  # a probability of binary images is below one
    loss = made_loss(model, x)
    assert torch.isfinite(loss) and loss > 0, loss
    model.zero_grad()
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    assert model.layers[0].weight.grad.abs().sum() > 0, "no gradient reached the first layer"
    # No output may depend on its own input or a later one: the first pixel's logit sees no input at all.
    first = model.degrees_0[m].argmin()  # the pixel predicted first sees nothing
    x_in = x[:1].clone().requires_grad_(True)
    model(x_in)[0, first].backward()
    assert torch.equal(x_in.grad, torch.zeros_like(x_in)), "the first pixel's logit depends on the input"
# The training objective cycles through the masks, one per step, and records what the layers held.
fingerprints = []
objective = cycling_objective(1, mask_probes(model, 0), fingerprints)
for step in range(3):
    loss, terms = objective(model, x)
    assert model.mask_index == step % model.n_masks and terms["nll"].shape == (5,), (step, terms)
    loss.backward()
assert fingerprints[0] == fingerprints[2] != fingerprints[1], "the fingerprints do not follow the masks"
scores = evaluate_masks(model, x)
assert scores["nll_ensemble"] <= scores["nll_one_mask"] + 1e-4, scores  # Jensen: the mixture is no worse
print("copied cells ok")
