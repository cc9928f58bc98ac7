"""The Lava backend: the integer model as Lava processes in Lava's fixed-point simulator.

- `synapses.py`: ternary synapses on Lava's own `Dense` process (graded spikes), bit-exact.
- `neurons.py`: the integer RMSNorm as a standalone custom neuron process, bit-exact.
- `backend.py`: the whole model as a process graph (`LavaLM`, `LavaBackend`), token by token,
  bit-exact with the emulator for every token and every probed integer.
"""
