"""Runs after the cells of Hierarchical_VAE.ipynb tagged "model" and "objective", in their
namespace, with only torch: both inference variants on a random binary batch through the objective
with warm-up and free bits, backward, a few steps of a reader's own loop, the validation score and
the log-weights."""
# ruff: noqa: F821  (HierarchicalVAE, hierarchical_objective, evaluate_elbo, log_importance_weights
# and torch come from the cells)

torch.manual_seed(0)
x = torch.rand(5, 784).bernoulli()
for inference in ("bottom_up", "top_down"):
    model = HierarchicalVAE(inference, hidden_sizes=(16, 8), latent_sizes=(6, 3))
    schedule = {"kl_weight": 0.5, "free_bits": 0.1}
    loss, terms = hierarchical_objective(model, x, schedule)
    assert list(terms) == ["reconstruction", "kl_z1", "kl_z2", "elbo"]
    assert all(t.shape == (5,) for t in terms.values())
    loss.backward()
    assert torch.isfinite(loss) and all(torch.isfinite(p.grad).all() for p in model.parameters())

    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(20):
        loss, _ = hierarchical_objective(model, x, {"kl_weight": 1.0, "free_bits": 0.0})
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0], losses
    scores = evaluate_elbo(model, x, batch_size=2)
    assert list(scores) == ["reconstruction", "kl_z1", "kl_z2", "elbo"] and model.training
    assert log_importance_weights(model, x, 7).shape == (7, 5)
print("copied cells ok")
