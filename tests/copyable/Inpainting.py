"""Runs after the cells of Inpainting.ipynb tagged "model" and "objective", in their namespace, with
only torch: a tiny MADE-like network (masked layers with a `mask` buffer, as MADE.ipynb builds them)
scored exactly on a batch with observed-first orderings, one order-agnostic step with backward, and
a tiny VAE through one step of each sampler."""
# ruff: noqa: F821  (observed_first_degrees, masked_logits, exact_conditional_nll, use_degrees,
# order_agnostic_objective, gibbs_step, metropolis_log_ratio and torch come from the cells)

import torch.nn as nn


class Masked(nn.Linear):
    def __init__(self, n_in, n_out, bias=True):
        super().__init__(n_in, n_out, bias)
        self.register_buffer("mask", torch.ones(n_out, n_in))

    def forward(self, x):
        return nn.functional.linear(x, self.mask * self.weight, self.bias)


class TinyMADE(nn.Module):
    def __init__(self, d, hidden):
        super().__init__()
        self.layers = nn.ModuleList([Masked(d, hidden), Masked(hidden, d)])
        self.direct = Masked(d, d, bias=False)

    def forward(self, x):
        return self.layers[1](torch.relu(self.layers[0](x))) + self.direct(x)


torch.manual_seed(0)
made, x = TinyMADE(784, 16), torch.rand(6, 784).bernoulli()
missing = torch.zeros(6, 784, dtype=torch.bool)
missing[:, 392:] = True
missing[0, :10] = True  # one image with its own mask
conditional, full = exact_conditional_nll(made, x, missing, 2, torch.Generator().manual_seed(0), chunk=4)
assert conditional.shape == (6,) and (conditional > 0).all() and (full > conditional).all()

objective = order_agnostic_objective([16], torch.Generator().manual_seed(1))
loss, terms = objective(made, x)
loss.backward()
assert torch.isfinite(loss) and terms["nll"].shape == (6,)


class TinyVAE(nn.Module):
    def __init__(self, latent=2):
        super().__init__()
        self.encoder, self.decoder = nn.Linear(784, 2 * latent), nn.Linear(latent, 784)

    def encode(self, x):
        return self.encoder(x).chunk(2, dim=-1)

    def decode(self, z):
        return self.decoder(z)


vae = TinyVAE()
z = torch.randn(6, 2)
for metropolis in (False, True):
    x_hat, z_new, accept, log_px_obs_z = gibbs_step(
        vae, x, missing, torch.where(missing, 1.0, x), z, metropolis
    )
    assert torch.equal(x_hat[~missing], x[~missing]) and accept.shape == (6,) and log_px_obs_z.shape == (6,)
print("copied cells ok")
