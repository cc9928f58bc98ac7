"""The Lava backend: the integer model as Lava processes in Lava's fixed-point simulator.

- `synapses.py`: ternary synapses on Lava's own `Dense` process (graded spikes), bit-exact.
- `neurons.py`: the integer RMSNorm as a standalone custom neuron process, bit-exact.
- `graph.py`: the layers as one process graph (`LavaGraph`), fed and read token by token.
- `worker.py`: the graph in a spawned worker process (`LavaWorker`), so it runs from any thread.
- `backend.py`: the host side (embedding, LM head, probes) around it (`LavaLM`, `LavaBackend`),
  bit-exact with the emulator for every token and every probed integer.
"""
