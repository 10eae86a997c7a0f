"""Run after the cells of Pyro_VAE.ipynb tagged "model" (in the same namespace, torch and Pyro only):
a tiny model on a random binary batch, the collection's interface, Pyro's loss and its gradient."""

# ruff: noqa: F821  (PyroVAE, hand_written_log_weight come from the notebook's cells)
import pyro
import pyro.poutine as poutine
import torch
from pyro.infer import Trace_ELBO

torch.manual_seed(0)
pyro.clear_param_store()
model = PyroVAE(hidden_sizes=[16, 8], latent_dim=3)
x = torch.rand(5, 784).bernoulli()

mu, logvar = model.encode(x)
assert mu.shape == logvar.shape == (5, 3)
assert model.decode(mu).shape == x.shape

loss = Trace_ELBO().differentiable_loss(model.model, model.guide, x)  # -ELBO summed over the batch
loss.backward()
assert torch.isfinite(loss)
assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())

# Pyro's log-weight at the guide's z is the hand-written one.
with torch.no_grad():
    guide_trace = poutine.trace(model.guide).get_trace(x)
    model_trace = poutine.trace(poutine.replay(model.model, trace=guide_trace)).get_trace(x)
    pyro_log_weight = model_trace.log_prob_sum() - guide_trace.log_prob_sum()
    by_hand = hand_written_log_weight(model, x, guide_trace.nodes["z"]["value"]).sum()
assert torch.allclose(pyro_log_weight, by_hand, rtol=1e-5), (pyro_log_weight, by_hand)
print("copied cells ok")
