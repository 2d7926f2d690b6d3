"""Content-aware ranking, insights and opportunities learned from historical headline A/B tests.

Modules, by job:

* ``data``            — load/validate test files, group arms into experiments (+ chi-square significance)
* ``embedding_cache`` — MiniLM features (layer means, sentence embeddings) cached on disk by view + text hash
* ``style``           — interpretable stylistic features of a headline
* ``models``          — the paper ranker (PCA + fixed-effects ridge) and the pairwise ranker; both linear
* ``metrics`` / ``cv``— within-experiment metrics, grouped CV and inner hyper-parameter selection
* ``train``           — the ``ranker train`` / ``ranker cv`` pipelines
* ``artifact``        — the versioned ``.npz`` the engine loads once at start
* ``attributes``      — marketing-attribute lexicon, attribute space V, sign-constrained Lasso β''
* ``insights``        — insight / opportunity / novelty indices and potential levels
* ``language``        — template sentences, grounded LLM prompts with a rubric and self-reflection
* ``prioritize``      — MMR choice of K of N candidates
* ``warm_start`` / ``simulate`` — score-tilted priors for allocators and their replay measurement
* ``service``         — :class:`~engine.ranker.service.RankerService`, what the HTTP API calls
* ``plots`` / ``cli`` — PNG charts and ``abengine ranker``
"""
