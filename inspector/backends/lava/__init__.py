"""The Lava backend: the integer model as Lava processes in Lava's fixed-point simulator.

- `params.py`: the data the processes are built from (widths, tables, gains, multipliers, shifts),
  taken from the converted model; no Lava, no functions of the emulator.
- `processes.py`: one Lava process per neuron group of the core map (ports and Vars).
- `models.py`: their fixed-point process models, numpy integer arithmetic written from the equations.
- `synapses.py`: ternary synapses on Lava's own `Dense` process (graded spikes), bit-exact.
- `graph.py`: the wiring (`LavaGraph`), fed and read token by token through Injector/Extractors.
- `worker.py`: the graph in a spawned worker process (`LavaWorker`), so it runs from any thread.
- `activity.py`: a probe whose activity table counts what the graph's ports carried.
- `backend.py`: the host side (embedding, LM head, probes) around it (`LavaLM`, `LavaBackend`),
  bit-exact with the emulator for every token and every probed integer.
"""
