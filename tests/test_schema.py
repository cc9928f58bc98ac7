"""The layer schema is the one place that names sites and neuron groups, and it agrees with its users.

What counts as spelling a name out: a string constant in code equal to a site or group name (a
dictionary key, a comparison, an argument, a default), or a dotted key with one as a component
(`"attn.o_proj"`, the `".hidden"` of `f"layers.{i}.hidden"`). Docstrings are prose and do not count;
nor do strings with spaces that merely mention a name ("the hidden state").
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from inspector import schema as S

REPO = Path(__file__).resolve().parents[1]
SOURCES = sorted([*(REPO / "inspector").rglob("*.py"), *(REPO / "pages").rglob("*.py")])
SCHEMA = REPO / "inspector" / "schema.py"


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the constants that are docstrings (a module's, class's or function's first statement)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                out.add(id(first.value))
    return out


def _names_a_site(text: str, names: frozenset[str]) -> bool:
    return text in names or (" " not in text and any(part in names for part in text.split(".")))


def spelled_names(source: str, names: frozenset[str]) -> list[tuple[int, str]]:
    """(line, string) of every string constant in code that is, or has as a dotted component, a site or group name."""
    tree = ast.parse(source)
    prose = _docstrings(tree)
    return sorted(
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in prose
        and _names_a_site(node.value, names)
    )


def test_the_checker_flags_keys_comparisons_and_arguments_but_not_prose():
    names = frozenset({"hidden", "o_proj", "mlgru"})
    source = '''
"""Module docstring naming hidden."""
TABLE = {"hidden": 1}
def f(site="o_proj"):
    """Docstring: o_proj."""
    if site == "mlgru":
        print("the hidden state")
    return g("hidden"), f"layers.{site}.hidden", "attn.o_proj"
'''
    assert spelled_names(source, names) == [
        (3, "hidden"), (4, "o_proj"), (6, "mlgru"), (8, ".hidden"), (8, "attn.o_proj"), (8, "hidden"),
    ]
    assert spelled_names('x = "hidden_state"\ny = "layers."\n', names) == []


def test_the_names_checked_are_every_site_and_group():
    names = S.site_names()
    assert {S.HIDDEN, S.GATE_HALF, S.Y, S.LOGITS, S.EMBEDDINGS, S.spikes(S.O_PROJ), S.accumulator(S.GATE_PROJ)} <= names
    assert set(S.GROUP_ORDER) | {S.FINAL_NORM_GROUP, S.LM_HEAD} <= names


@pytest.mark.parametrize("path", [p for p in SOURCES if p != SCHEMA], ids=lambda p: str(p.relative_to(REPO)))
def test_no_module_spells_a_site_or_group_name(path):
    found = spelled_names(path.read_text(), S.site_names())
    assert not found, f"{path.relative_to(REPO)}: use the constants of inspector.schema for {found}"


# -- the schema is consistent, and its users derive from it -------------------------------------------
def test_every_site_belongs_to_a_group_of_the_layer_and_messages_follow_the_flow():
    for site in S.LAYER_FLOW:
        assert site.group in S.GROUP_ORDER, site
        S.size_of(site.size, S.Dims(1, 2, 3))
    for group in S.LAYER_GROUPS:
        assert group.messages, f"{group.name} sends nothing"
        for offset, reader in group.consumers:
            assert offset in (0, 1) and reader in S.GROUP_OF
    # every projection: spikes sent by one group, synapses held by one group, outputs computed by the holder
    for p in S.PROJECTION_TABLE:
        holder = S.holder_of(p.name)
        assert all(S.SITE_OF[site].group == holder.name for site in p.sites)
        assert (0, holder.name) in S.sender_of(p.name).consumers


def test_messaging_groups_are_the_schema_groups_with_a_key():
    from inspector.quant import messaging
    from inspector.quant.config import QuantConfig

    assert [g.core_group for g in messaging.GROUPS.values()] == [g.name for g in S.MESSAGING_GROUPS]
    assert {p for g in messaging.GROUPS.values() for p in g.projections} == set(S.PROJECTIONS)
    fields = set(QuantConfig.__dataclass_fields__)
    assert set(messaging.MODE_FIELDS) | set(messaging.VTH_FIELDS) <= fields


def test_mapper_group_sizes_are_the_schema_size_symbols():
    from inspector.chip.mapper import dims, model_groups
    from inspector.lm.config import HGRNBitConfig

    config = HGRNBitConfig(hidden_size=32, num_hidden_layers=2, vocab_size=50)
    sizes = {(g.layer, g.name): g.neurons for g in model_groups(config)}
    for group in S.LAYER_GROUPS:
        assert sizes[(1, group.name)] == S.size_of(group.size, dims(config))
    assert sizes[(-1, S.FINAL_GROUP.name)] == config.hidden_size


def test_the_docs_print_the_schema_tables():
    text = (REPO / "docs" / "integer-model.md").read_text()
    begin, end = "<!-- schema tables: begin -->\n", "<!-- schema tables: end -->"
    assert begin in text and end in text, "docs/integer-model.md lost its schema tables"
    printed = text.split(begin, 1)[1].split(end, 1)[0]
    assert printed.strip() == S.markdown_tables().strip(), (
        "docs/integer-model.md: the schema tables are stale; paste inspector.schema.markdown_tables()"
    )


class _SiteOrder:
    """Records the layer-0 sites of one emulated token: (site, kind, size) in call order."""

    def __init__(self) -> None:
        self.sites: list[tuple[str, str, int]] = []

    def site(self, key, codes, scale, clipped, kind) -> None:
        layer, site = S.split_site_key(key)
        if layer == 0:
            self.sites.append((site, kind, int(codes[0, 0].numel())))

    def synapses(self, key, spikes, proj) -> None:
        pass


def test_the_layer_flow_is_the_order_kind_and_size_the_integer_model_reports(tiny_checkpoint):
    import torch

    from inspector.backends.emulator import Emulator
    from inspector.chip.mapper import dims
    from inspector.lm.checkpoint import load_checkpoint

    emulator = Emulator(load_checkpoint(tiny_checkpoint))
    order = _SiteOrder()
    emulator.integer(torch.tensor([[3]]), None, order)
    d = dims(emulator.loaded.config)
    assert order.sites == [(s.name, s.kind, S.size_of(s.size, d)) for s in S.LAYER_FLOW]
