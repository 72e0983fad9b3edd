"""The engine that trains a network: optimizers, schedules, clipping, thread control and the gradient
exchange of data-parallel runs. It knows ``torch.nn.Module`` and nothing of the models' maths, so the
model families build on it without the engine importing them."""
