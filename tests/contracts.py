"""Import-linter contracts for the vertical slices (``make lint``; pyproject.toml).

- ``feature_boundaries``: a module of one feature imports another feature
  only through its public modules (``service``, ``errors``, ``models`` by
  default), apart from the exceptions listed with their reason.
- ``no_cross_feature_cycles``: no import cycle runs through modules of two
  features (each feature's modules may import each other as they like).

Import-linter's own contract types cannot say "another feature's", so these
two walk the import graph (grimp) themselves.
"""

from __future__ import annotations

from typing import Any

from importlinter import Contract, ContractCheck, fields, output


def _feature(module: str, root: str) -> str | None:
    parts = module.split(".")
    if len(parts) < 2 or parts[0] != root:
        return None
    return parts[1]


def _cross_feature_imports(graph: Any, root: str) -> list[tuple[str, str]]:
    out = []
    for importer in sorted(graph.modules):
        a = _feature(importer, root)
        if a is None:
            continue
        for imported in sorted(graph.find_modules_directly_imported_by(importer)):
            b = _feature(imported, root)
            if b is not None and b != a:
                out.append((importer, imported))
    return out


class FeatureBoundaryContract(Contract):
    """Features meet only through their public modules."""

    root = fields.StringField()
    public = fields.ListField(subfield=fields.StringField())
    exceptions = fields.ListField(subfield=fields.StringField(), required=False)

    def check(self, graph: Any, verbose: bool) -> ContractCheck:
        public = set(self.public)  # type: ignore[arg-type]
        allowed = set(self.exceptions or [])  # type: ignore[arg-type]
        root = str(self.root)
        bad = []
        for importer, imported in _cross_feature_imports(graph, root):
            leaf = imported.split(".")[2] if imported.count(".") >= 2 else ""
            if leaf in public or f"{importer} -> {imported}" in allowed:
                continue
            if imported == f"{root}.{_feature(imported, root)}":
                continue  # the feature's package itself (its __init__)
            bad.append(f"{importer} -> {imported}")
        return ContractCheck(kept=not bad, metadata={"bad": bad})

    def render_broken_contract(self, check: ContractCheck) -> None:
        for line in check.metadata["bad"]:
            output.print_error(f"{line} (import its service, errors or models instead)")
            output.new_line()


class NoCrossFeatureCycleContract(Contract):
    """No import cycle passes through two features."""

    root = fields.StringField()

    def check(self, graph: Any, verbose: bool) -> ContractCheck:
        root = str(self.root)
        cycles = []
        for importer, imported in _cross_feature_imports(graph, root):
            back = graph.find_shortest_chain(importer=imported, imported=importer)
            if back is not None:
                cycles.append(" -> ".join([importer, *back]))
        return ContractCheck(kept=not cycles, metadata={"cycles": sorted(set(cycles))})

    def render_broken_contract(self, check: ContractCheck) -> None:
        for line in check.metadata["cycles"]:
            output.print_error(line)
            output.new_line()
