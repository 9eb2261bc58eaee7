"""The demo corpus builder (:mod:`core.recipes.corpus.corpus`) and its generators: a sentence
grammar (:mod:`~core.recipes.corpus.grammar`) spoken with :mod:`core.data.espeak`, and
procedural captioned sound events (:mod:`~core.recipes.corpus.sounds`)."""
