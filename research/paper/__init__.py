"""The paper's experiments (Mahabal et al. 2017) on the repository's data, cached as JSON.

Run them with ``python -m research.paper``; each experiment writes
``docs/results/<name>.json`` part by part, so an interrupted run resumes where it stopped, and
``docs/results.md`` is rewritten from whatever JSON exists after every experiment.
"""
