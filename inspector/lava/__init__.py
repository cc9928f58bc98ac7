"""The Lava backend (work in progress): the integer model as Lava processes.

Done so far, each bit-exact with the emulator in `Loihi2SimCfg(select_tag="fixed_pt")`:
ternary synapses as Lava's own `Dense` process with graded spikes (`synapses.py`), and the integer
RMSNorm as a custom vector neuron process (`neurons.py`). Not done yet: the MLGRU and GLU neuron
processes, wiring a whole layer, and the token-by-token backend; the app and CLI report the Lava
backend as unavailable until they exist.
"""
