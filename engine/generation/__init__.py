"""Variant generation: an LLM writes candidate copies, which are validated before any is served.

:class:`~engine.generation.service.GenerationService` is the entry point (the HTTP API and the CLI use it);
backends live in :mod:`engine.generation.backends`, prompt templates in ``prompts/``.
"""
