"""The Lava backend (work in progress): the integer model as Lava processes.

Done so far: ternary synapses as Lava's own `Dense` process with graded spikes, bit-exact with
`inspector.quant.kernels.ternary_matmul` (see `synapses.py`). Not done yet: the neuron processes
(norms, MLGRU, GLU) and the token-by-token backend; the app and CLI report the Lava backend as
unavailable until they are.
"""
