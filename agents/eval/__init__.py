"""Evaluation: the SAGE benchmark runner, its report, the response-strategy tagger, how far to trust a score
(trials, comparisons, held-out simulators, probes, canaries) and the agents it can play (reference, independent,
Hugging Face, OpenAI-compatible, SB3)."""
