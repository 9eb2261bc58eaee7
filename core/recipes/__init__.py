"""Build tooling: what makes the bundled assets, kept apart from what audits models.

- :mod:`core.recipes.zoo`: the training recipes of the zoo's reference models (recipe
  dataclasses, training-data helpers and one trainer per zoo entry, found by the entry's
  name in :data:`core.recipes.zoo.registry.TRAINERS`); ``overheard zoo build`` runs them.
- :mod:`core.recipes.corpus`: the demo-corpus builder (``overheard demo build-corpus``) and
  the generators it draws from (a sentence grammar, procedural sound events), also the
  source of the training pools the recipes use.

Recipes may import :mod:`core.targets` and :mod:`core.data` (they train the models the
adapters load, on the data those modules read); neither imports this package, so loading
or resolving a target never imports a training recipe or the libraries it needs.
"""
