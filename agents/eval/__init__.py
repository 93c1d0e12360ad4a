"""Evaluation: the SAGE benchmark runner, its report, the response-strategy tagger and the agents it can play (reference, Hugging Face, OpenAI-compatible, SB3)."""
