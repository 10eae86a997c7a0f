"""Run after the cells of Pyro_VAE.ipynb tagged "model", "objective" and "train" (in the same
namespace, torch and Pyro only): a tiny model on a random binary batch, the collection's interface,
Pyro's loss and its gradient, the log-weights read off the traces, then a few epochs of the SVI
training loop on random grey images."""

# ruff: noqa: F821  (PyroVAE, hand_written_log_weight, log_importance_weights, elbo_terms, evaluate_elbo
# and train come from the notebook's cells)
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

log_w = log_importance_weights(model, x, 7)
assert log_w.shape == (7, 5) and torch.isfinite(log_w).all()
rec, kl, elbo = elbo_terms(model, x, batch_size=2)  # batched over images, one z each
assert rec.shape == kl.shape == elbo.shape == (5,) and torch.allclose(elbo, rec - kl)

# The SVI training loop, copied with the rest: a few epochs on random grey images raise the ELBO.
pyro.clear_param_store()
model = PyroVAE(hidden_sizes=[16, 8], latent_dim=3)
grey = torch.rand(64, 784)
binary = torch.bernoulli(grey[:16])  # validation images are binary, as the data protocol's are
history = train(model, Trace_ELBO(), evaluate_elbo, grey, binary, range(1, 6), 16, 1e-2, torch.Generator())
assert list(history) == ["train_elbo", "val_elbo", "val_reconstruction", "val_kl", "seconds"]
assert all(len(values) == 5 for values in history.values())
assert history["val_elbo"][-1] > history["val_elbo"][0], history["val_elbo"]
print("copied cells ok")
